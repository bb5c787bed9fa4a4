"""The diagnostic model's behaviour: a textbook rare presentation first, a disease known only from training cases
rankable, every part switchable, folds grouped by publication, calibrated probabilities over the universe."""

import joblib
import numpy as np
import pandas as pd
import pytest

from dxlab.data.preprocess import normalise_terms
from dxlab.data.sources.phenopackets import PhenopacketsSource
from dxlab.evaluation.cv import grouped_folds
from dxlab.models.diagnostic import DiagnosticModel

pytestmark = pytest.mark.integration

MARFAN = "OMIM:154700"
# the textbook presentation: arachnodactyly, ectopia lentis, aortic root aneurysm, myopia,
# disproportionate tall stature; male, 20 years
MARFAN_PATIENT = {"findings": ["HP:0001166", "HP:0001083", "HP:0002616", "HP:0000545", "HP:0001519"],
                  "excluded": [], "sex": "M", "age": 20.0, "measurements": {}, "patient_id": "q"}
NEW_DISEASE = "OMIM:999999"  # annotated nowhere: known only from its training cases


def patients(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"findings": [], "excluded": [], "sex": None, "age": np.nan, "measurements": {},
                          "patient_id": f"q{i}", "diagnosis": None, **row} for i, row in enumerate(rows)])


@pytest.fixture(scope="module")
def model(tiny_project):
    root, _, _ = tiny_project
    return joblib.load(root / "models" / "diagnostic.joblib")


@pytest.fixture(scope="module")
def cases(tiny_project, knowledge):
    root, _, _ = tiny_project
    source = PhenopacketsSource(str(root / "cases.jsonl"), name="case_reports")
    table = source.read_file(source.files()[0]).table
    return normalise_terms(table, knowledge.normalise_term)


def test_the_universe_is_every_annotated_disease_and_every_training_disease(model, knowledge, tiny_project):
    root, _, _ = tiny_project
    annotated = set(knowledge.diseases.loc[knowledge.diseases["database"].isin(["OMIM", "ORPHA"]), "disease_id"])
    assert annotated <= set(model.classes_) and len(model.classes_) > 12000
    train = pd.read_parquet(root / "data" / "processed" / "train.parquet", columns=["diagnosis"])
    assert set(train["diagnosis"]) <= set(model.classes_)
    assert model.disease_names_[MARFAN] == "Marfan syndrome"
    assert model.knowledge_version_.startswith("hp") or "sha256:" in model.knowledge_version_


def test_textbook_marfan_is_first_with_a_calibrated_probability(model):
    proba = model.predict_proba(patients([MARFAN_PATIENT]))[0]
    assert proba.sum() == pytest.approx(1.0, abs=1e-4) and (proba >= 0).all()
    # Marfan syndrome first: the OMIM entry, or its Orphanet twin when the tiny sample of case reports has no
    # Marfan case to prefer the OMIM one (the full champion, trained on every shared case, answers OMIM:154700)
    first = model.classes_[int(np.argmax(proba))]
    assert model.disease_names_[first] == "Marfan syndrome"
    assert 0.2 < proba.max() < 0.999  # confident, not certain: calibrated on real case reports
    index, top_p, by_system = model.predict_top(patients([MARFAN_PATIENT]), 5)
    assert model.classes_[index[0, 0]] == first and top_p[0, 0] == pytest.approx(proba.max(), rel=1e-4)
    assert by_system.sum() == pytest.approx(1.0, abs=1e-3)  # the probability by type sums the same distribution
    account = model.explain(MARFAN_PATIENT, [index[0, 0]])[0]
    assert {"HP:0001083", "HP:0001166"} <= {f["hpo_id"] for f in account["supporting"]}


def test_a_disease_seen_only_in_training_cases_can_be_ranked(knowledge_dir):
    findings = ["HP:0001631", "HP:0000175", "HP:0001250", "HP:0002020"]  # ASD, cleft palate, seizure, reflux
    train = patients([{"findings": findings[:3], "diagnosis": NEW_DISEASE},
                      {"findings": findings[1:], "diagnosis": NEW_DISEASE},
                      {"findings": MARFAN_PATIENT["findings"][:3], "diagnosis": MARFAN}])
    model = DiagnosticModel(knowledge_dir=str(knowledge_dir), databases=["OMIM"], reranker={"enabled": False},
                            calibration={"enabled": False}).fit(train, train["diagnosis"], ["PMID:1", "PMID:2",
                                                                                            "PMID:3"])
    assert NEW_DISEASE in model.classes_
    scores = model.decision_function(patients([{"findings": findings}]))[0]
    j = list(model.classes_).index(NEW_DISEASE)
    assert (scores > scores[j]).sum() < 3
    # scored as a case of one of its two training publications, the other one still teaches it
    assert (model.decision_function(patients([{"findings": findings}]), ["PMID:1"])[0] > scores[j]).sum() < 10


def test_every_part_switch_changes_the_scores(cases, knowledge_dir):
    y, groups = cases["diagnosis"].astype(str), cases["group_id"].astype(str)
    query = cases.head(40)
    base = dict(knowledge_dir=str(knowledge_dir), databases=["OMIM"], reranker={"min_training_cases": 20})
    whole = DiagnosticModel(**base).fit(cases, y, groups)
    reference = whole.decision_function(query, groups[:40])
    assert whole.reranker_ is not None and whole.neighbours_ is not None
    for switch in ({"profiles": {"enabled": False}}, {"neighbours": {"enabled": False}},
                   {"reranker": {"enabled": False}}, {"weights": {"mention": 0.0}}):
        variant = DiagnosticModel(**{**base, **switch}).fit(cases, y, groups)
        assert not np.allclose(variant.decision_function(query, groups[:40]), reference), switch
    # the side-by-side view of the same fitted model: the parts combine to the score before the reranker
    parts = whole.part_scores(query, groups[:40])
    no_mentions = whole.combine(parts, {**whole.settings_["weights"], "mention": 0.0})
    assert not np.allclose(no_mentions, whole.combine(parts))


def test_folds_are_grouped_by_publication(cases):
    fold = grouped_folds(cases["diagnosis"], cases["group_id"], 5, 0)
    per_group = pd.Series(fold).groupby(cases["group_id"].to_numpy()).nunique()
    assert (per_group == 1).all() and len(set(fold)) == 5  # no publication on both sides of any split


def test_a_training_case_is_scored_by_what_never_saw_its_publication(model, cases, tiny_project):
    root, _, _ = tiny_project
    train = pd.read_parquet(root / "data" / "processed" / "train.parquet", columns=["source", "group_id"])
    # the fitted model's own folds: each real case's publication in exactly one fold (its reranker and calibrator
    # fitted without it); simulated patients do not teach the reranker (learning_sources)
    assert set(model.fold_of_group_) == set(train.loc[train["source"] == "case_reports", "group_id"])
    cases = cases[cases["group_id"].isin(model.fold_of_group_)].reset_index(drop=True)
    groups = cases["group_id"].astype(str).to_numpy()[:30]
    folds = model._folds(groups, len(groups))
    assert (folds >= 0).all()
    # neighbours leave the publication out: a case is not its own nearest neighbour
    own = model.neighbours_.scores(cases.head(30), groups)
    with_itself = model.neighbours_.scores(cases.head(30))
    truth = [list(model.classes_).index(d) for d in cases["diagnosis"].head(30)]
    assert (with_itself[np.arange(30), truth] >= own[np.arange(30), truth]).all()
    assert (with_itself[np.arange(30), truth] > own[np.arange(30), truth] + 1e-6).any()
