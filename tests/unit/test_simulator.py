"""The simulated cohort: long tail as configured, deterministic, faithful to the annotations."""

import numpy as np
import pandas as pd
import pytest

from dxlab.simulate.cohort import BAD_ROW_KINDS, SimulatorConfig, simulate_patients


def _config(**kw):
    base = dict(n_diseases=30, n_patients=900, min_patients_per_disease=2, bad_row_rate=0.0, seed=7,
                onset_age_ranges={"HP:0003577": (0.0, 0.1), "HP:0003581": (16.0, 60.0)})
    base.update(kw)
    return SimulatorConfig(**base)


@pytest.fixture(scope="module")
def cohort(knowledge):
    return simulate_patients(knowledge, _config())


def test_prevalence_follows_zipf(cohort):
    panel = cohort.panel.sort_values("prevalence_rank")
    counts = panel["target_patients"].to_numpy()
    assert len(panel) == 30
    assert (np.diff(counts) <= 0).all()  # prevalence falls with rank
    # Zipf exponent 1: the top disease has about ten times the patients of the tenth
    assert 7 <= counts[0] / counts[9] <= 13
    observed = cohort.patients["diagnosis"].value_counts()
    assert observed[panel["disease_id"].iloc[0]] == counts[0]


def test_steeper_exponent_gives_longer_tail(knowledge):
    flat = simulate_patients(knowledge, _config(zipf_exponent=0.5)).panel["target_patients"]
    steep = simulate_patients(knowledge, _config(zipf_exponent=1.5)).panel["target_patients"]
    assert steep.max() > flat.max() and (steep < 10).sum() > (flat < 10).sum()


def test_same_seed_same_cohort_other_seed_other_cohort(knowledge, cohort):
    again = simulate_patients(knowledge, _config())
    pd.testing.assert_frame_equal(cohort.patients, again.patients)
    other = simulate_patients(knowledge, _config(seed=8))
    assert not other.patients["findings"].equals(cohort.patients["findings"])


def test_obligate_findings_appear_in_every_patient(knowledge, cohort):
    ann = knowledge.phenotype_annotations(cohort.panel["disease_id"])
    sex_of_term = dict(zip(knowledge.terms["id"], knowledge.terms["sex"]))
    both_sexes = ann["hpo_id"].map(lambda t: sex_of_term.get(t, "") == "")
    obligate = ann[(ann["frequency"] >= 1.0) & ~ann["negated"] & (ann["sex"] == "") & both_sexes]
    assert len(obligate) > 0, "the test panel should hold some obligate annotations"
    patients = cohort.patients
    for disease, group in obligate.groupby("disease_id"):
        findings = patients.loc[patients["diagnosis"] == disease, "findings"].str.split(";")
        for term in group["hpo_id"]:
            assert findings.map(lambda f: term in f).all(), f"{term} missing in a patient of {disease}"


def test_findings_follow_annotated_frequencies(knowledge):
    cohort = simulate_patients(knowledge, _config(n_diseases=5, n_patients=2000, omission_rate=0.0,
                                                 imprecision_rate=0.0, noise_findings_mean=0.0))
    top = cohort.panel.iloc[0]["disease_id"]
    ann = knowledge.phenotype_annotations([top])
    sex_of_term = dict(zip(knowledge.terms["id"], knowledge.terms["sex"]))
    ann = ann[~ann["negated"] & (ann["sex"] == "") & (ann["hpo_id"].map(sex_of_term) == "")]
    findings = cohort.patients.loc[cohort.patients["diagnosis"] == top, "findings"].str.split(";")
    for term, freq in zip(ann["hpo_id"], ann["frequency"]):
        share = findings.map(lambda f: term in f).mean()
        assert abs(share - freq) < 0.12, (term, share, freq)


def test_excluded_findings_never_contradict_observed(knowledge, cohort):
    for findings, excluded in zip(cohort.patients["findings"], cohort.patients["excluded_findings"]):
        implied = knowledge.propagate(findings.split(";"))
        assert not (set(filter(None, excluded.split(";"))) & implied)


def test_ages_follow_onset_and_sex_follows_annotations(knowledge, cohort):
    diseases = knowledge.diseases.set_index("disease_id")
    for disease, group in cohort.patients.groupby("diagnosis"):
        onset = set(diseases.loc[disease, "onset"])
        ages = group["age"].dropna()
        if onset == {"HP:0003581"}:  # adult onset only
            assert (ages >= 16).all()
        sex_specific = diseases.loc[disease, "sex_specific"]
        if sex_specific in ("MALE", "FEMALE"):
            assert set(group["sex"].dropna()) <= {sex_specific[0]}


def test_findings_only_one_sex_can_have_stay_in_that_sex(knowledge, cohort):
    sex_of_term = dict(zip(knowledge.terms["id"], knowledge.terms["sex"]))
    for sex, findings in zip(cohort.patients["sex"], cohort.patients["findings"]):
        for term in findings.split(";"):
            if sex_of_term.get(term) and sex:
                assert sex_of_term[term][0] == sex, (term, sex)


def test_demographics_sometimes_missing(cohort):
    assert 0 < cohort.patients["family_history"].isna().mean() < 0.6
    assert cohort.patients["age"].isna().any()


def test_bad_rows_cover_every_kind(knowledge):
    cohort = simulate_patients(knowledge, _config(bad_row_rate=0.02))
    assert set(cohort.patients["defect"]) - {""} == set(BAD_ROW_KINDS)
