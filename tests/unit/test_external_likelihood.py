"""LikelihoodRanker: textbook presentations, excluded findings, sex, onset, reference cases, leave-publication-out."""

import numpy as np
import pandas as pd
import pytest

from dxlab.external.likelihood import ONSET_CLASSES, LikelihoodRanker, onset_class

MARFAN = "OMIM:154700"
LOEYS_DIETZ = "OMIM:609192"
# ectopia lentis, aortic root aneurysm, arachnodactyly, pectus excavatum
MARFAN_FINDINGS = ["HP:0001083", "HP:0002616", "HP:0001166", "HP:0000767"]


def cases(findings, excluded=None, sex=None, age=np.nan, onset=None) -> pd.DataFrame:
    n = len(findings)
    return pd.DataFrame({
        "patient_id": [f"q{i}" for i in range(n)],
        "findings": findings,
        "excluded": excluded if excluded is not None else [[] for _ in range(n)],
        "sex": [sex] * n,
        "age": [age] * n,
        "measurements": [{} if onset is None else {"onset_years": onset} for _ in range(n)],
        "diagnosis": [None] * n,
    })


@pytest.fixture(scope="module")
def ranker(knowledge):
    return LikelihoodRanker(mention_weight=0.0, excluded_weight=1.0).fit(knowledge)


def rank(scores: np.ndarray, classes, disease: str) -> float:
    j = list(classes).index(disease)
    return float((scores > scores[j]).sum() + 1)


def test_textbook_marfan_ranks_near_the_top_of_every_omim_disease(ranker):
    scores = ranker.decision_function(cases([MARFAN_FINDINGS]))[0]
    assert len(ranker.classes_) > 8000  # all OMIM diseases with annotations
    assert rank(scores, ranker.classes_, MARFAN) <= 3
    # ectopia lentis is what tells Marfan from Loeys-Dietz
    assert scores[list(ranker.classes_).index(MARFAN)] > scores[list(ranker.classes_).index(LOEYS_DIETZ)]


def test_no_findings_gives_finite_equal_scores(ranker):
    scores = ranker.decision_function(cases([[]]))
    assert np.isfinite(scores).all()
    assert np.ptp(scores) == pytest.approx(0.0)


def test_unknown_and_alias_terms_do_not_break_scoring(ranker):
    scores = ranker.decision_function(cases([MARFAN_FINDINGS + ["HP:9999999"]]))[0]
    assert np.isfinite(scores).all() and rank(scores, ranker.classes_, MARFAN) <= 3


def test_an_excluded_hallmark_lowers_the_disease(ranker):
    base = ranker.decision_function(cases([MARFAN_FINDINGS[1:]]))[0]
    without = ranker.decision_function(cases([MARFAN_FINDINGS[1:]], excluded=[["HP:0001083"]]))[0]
    marfan, unrelated = list(ranker.classes_).index(MARFAN), list(ranker.classes_).index("OMIM:219700")
    # relative to a disease without ectopia lentis (cystic fibrosis), Marfan loses when it is excluded
    assert (without[marfan] - without[unrelated]) < (base[marfan] - base[unrelated])


def test_excluded_finding_read_as_a_mention_points_to_the_disease(knowledge):
    mention = LikelihoodRanker(mention_weight=1.0, excluded_weight=0.0).fit(knowledge)
    base = mention.decision_function(cases([MARFAN_FINDINGS[1:]]))[0]
    mentioned = mention.decision_function(cases([MARFAN_FINDINGS[1:]], excluded=[["HP:0001083"]]))[0]
    marfan, unrelated = list(mention.classes_).index(MARFAN), list(mention.classes_).index("OMIM:219700")
    assert (mentioned[marfan] - mentioned[unrelated]) > (base[marfan] - base[unrelated])


def test_sex_specific_disease_prefers_its_sex(ranker, knowledge):
    info = knowledge.diseases.set_index("disease_id")
    female_only = next(d for d in ranker.classes_ if info.loc[d, "sex_specific"] == "FEMALE")
    j, other = list(ranker.classes_).index(female_only), list(ranker.classes_).index(MARFAN)
    as_female = ranker.decision_function(cases([MARFAN_FINDINGS], sex="F"))[0]
    as_male = ranker.decision_function(cases([MARFAN_FINDINGS], sex="M"))[0]
    assert as_female[j] - as_male[j] > 2.0  # a male patient practically rules it out
    assert as_female[other] == pytest.approx(as_male[other], abs=1e-4)  # autosomal dominant: no evidence


def test_onset_classes():
    assert ONSET_CLASSES[onset_class(0.0)] == "congenital"
    assert ONSET_CLASSES[onset_class(7 / 365.25)] == "neonatal"
    assert ONSET_CLASSES[onset_class(0.5)] == "infantile"
    assert ONSET_CLASSES[onset_class(3.0)] == "childhood"
    assert ONSET_CLASSES[onset_class(10.0)] == "juvenile"
    assert ONSET_CLASSES[onset_class(40.0)] == "adult"
    assert onset_class(float("nan")) is None and onset_class(None) is None and onset_class(-1.0) is None


def test_adult_onset_disease_is_unlikely_for_a_congenital_case(ranker, knowledge):
    onset = ranker.onset_
    adult = ONSET_CLASSES.index("adult")
    j = int(np.argmax(onset[:, adult]))  # a disease annotated with adult onset only
    congenital = ranker.decision_function(cases([MARFAN_FINDINGS], onset=0.0))[0]
    adult_case = ranker.decision_function(cases([MARFAN_FINDINGS], onset=40.0))[0]
    assert adult_case[j] - congenital[j] > 1.0


# -- reference cases and leave-publication-out -------------------------------------------------------------------
NEW_DISEASE = "OMIM:999999"  # not annotated: known only from reference cases
NEW_FINDINGS = ["HP:0001631", "HP:0000175", "HP:0001250", "HP:0002020"]  # ASD, cleft palate, seizure, reflux


def subset(knowledge) -> list[str]:
    """A few hundred diseases keep the reference-case tests fast."""
    omim = sorted(d for d in knowledge.diseases["disease_id"] if d.startswith("OMIM:"))
    return omim[::30] + [MARFAN]


def reference() -> tuple[pd.DataFrame, np.ndarray]:
    table = cases([NEW_FINDINGS, NEW_FINDINGS[:3], NEW_FINDINGS[1:], MARFAN_FINDINGS, MARFAN_FINDINGS[:3]])
    table["diagnosis"] = [NEW_DISEASE, NEW_DISEASE, NEW_DISEASE, MARFAN, MARFAN]
    return table, np.array(["PMID:1", "PMID:1", "PMID:2", "PMID:3", "PMID:4"], dtype=object)


def test_reference_cases_make_an_unannotated_disease_rankable(knowledge):
    table, groups = reference()
    ranker = LikelihoodRanker(diseases=subset(knowledge)).fit(knowledge, table, groups)
    assert NEW_DISEASE in ranker.classes_
    query = cases([NEW_FINDINGS])
    from_new_paper = ranker.decision_function(query, ["PMID:9"])[0]
    assert rank(from_new_paper, ranker.classes_, NEW_DISEASE) <= 3
    # its only reference cases come from the query's own publications: the disease is unknown again
    alone = LikelihoodRanker(diseases=subset(knowledge)).fit(knowledge, table.iloc[:2], groups[:2])
    own_paper = alone.decision_function(query, ["PMID:1"])[0]
    assert rank(own_paper, alone.classes_, NEW_DISEASE) > 0.5 * len(alone.classes_)


def test_leave_publication_out_equals_a_refit_without_that_publication(knowledge):
    table, groups = reference()
    query = cases([NEW_FINDINGS[:2] + MARFAN_FINDINGS[:1], MARFAN_FINDINGS[1:]])
    diseases = subset(knowledge)
    ranker = LikelihoodRanker(diseases=diseases, prior_weight=1.0).fit(knowledge, table, groups)
    for pub in ("PMID:1", "PMID:3"):
        lopo = ranker.decision_function(query, [pub, pub])
        keep = groups != pub
        refit = LikelihoodRanker(diseases=diseases, prior_weight=1.0).fit(knowledge, table[keep], groups[keep])
        fresh = refit.decision_function(query)
        cols = [list(ranker.classes_).index(c) for c in refit.classes_]
        np.testing.assert_allclose(lopo[:, cols], fresh, rtol=1e-5, atol=1e-4)
    # and the publication matters: using it changes the scores
    assert not np.allclose(ranker.decision_function(query, ["PMID:1"] * 2), ranker.decision_function(query))
