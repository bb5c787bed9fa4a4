"""External validation command on a 20-case sample of the shared case reports, and leave-publication-out."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dxlab.external.evaluate import CaseBasedRanker, Cases

pytestmark = pytest.mark.integration
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "phenopackets" / "cases.jsonl"


@pytest.mark.skipif(not SHARED.exists(), reason="the shared case reports are not beside the project")
def test_command_on_a_20_case_sample(tmp_path, knowledge_dir):
    lines = SHARED.read_text().splitlines()
    sample = random.Random(0).sample(lines, 20)
    cases = tmp_path / "sample.jsonl"
    cases.write_text("\n".join(sample) + "\n")
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "dxlab.cli", "evaluate-external", "--cases", str(cases), "--out", str(out),
                    "--reference", str(cases), f"paths.knowledge={knowledge_dir}"], check=True, capture_output=True, text=True,
                   env={**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"})
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("n_cases", "top1", "top3", "top10", "mrr", "n_covered", "covered_top1", "covered_top3", "covered_top10"):
        assert key in metrics
    assert metrics["n_cases"] == 20 and metrics["top1"] <= metrics["top3"] <= metrics["top10"] <= 1
    assert {"knowledge", "likelihood", "cases", "ensemble"} <= set(metrics["by_ranker"])
    assert metrics["ablations"] and all(m["n_cases"] == 20 for m in metrics["ablations"].values())
    # the sample is its own reference, used across publications only: every case falls in one coverage group
    groups = metrics["breakdown"]
    assert sum(g["n_cases"] for g in groups.values()) == 20
    ranks = pd.read_csv(out / "ranks.csv")
    assert len(ranks) == 20 and ranks["top10"].str.count(";").eq(9).all()
    truth = [json.loads(line)["disease_id"] for line in sample]
    assert list(ranks["true_disease"]) == truth
    assert {"rank_knowledge", "rank_likelihood", "rank_cases"} <= set(ranks.columns)
    hits = ranks[ranks["rank"] <= 10]
    assert (hits["annotated"] | hits["seen_elsewhere"]).all()  # only a disease the ensemble knows can be found
    report = (out / "external_validation.md").read_text()
    assert "## Rankers side by side" in report and "## Model card" in report
    card = (out / "model_card.md").read_text()  # the model card stands alone too, with metrics by sex and age band
    assert "**Intended use.**" in card and "not a diagnosis" in card
    assert "| female |" in card and "| ensemble |" in card
    assert (out / "figures" / "topk.png").stat().st_size > 0 and (out / "figures" / "rank_histogram.png").exists()


def test_case_based_ranker_never_uses_the_same_publication(knowledge):
    table = pd.DataFrame({"patient_id": ["a", "b", "c"], "findings": [["HP:0001250", "HP:0001263"]] * 2 + [["HP:0004322"]],
                          "diagnosis": ["OMIM:1", "OMIM:1", "OMIM:2"]})
    same_pub = Cases(table, np.array(["PMID:1", "PMID:1", "PMID:2"]), [])
    ranker = CaseBasedRanker(knowledge).fit(same_pub)
    scores = ranker.decision_function(table.iloc[[0]], ["PMID:1"])
    assert scores.max() == 0.0  # its twin is in the same publication: not usable
    other = ranker.decision_function(table.iloc[[0]], ["PMID:9"])
    assert other[0, list(ranker.classes_).index("OMIM:1")] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.skipif(not SHARED.exists(), reason="the shared case reports are not beside the project")
def test_full_coverage_model_ranks_beside_the_others(tmp_path, knowledge_dir, knowledge, monkeypatch):
    """The train_full stage on a panel of the sample's diseases, then the `learned` ranker and its ensemble weight."""
    from dxlab.external.evaluate import read_cases, run_rankers
    from dxlab.stages import train_full

    lines = SHARED.read_text().splitlines()
    cases_file = tmp_path / "sample.jsonl"
    cases_file.write_text("\n".join(random.Random(1).sample(lines, 20)) + "\n")
    cases = read_cases(cases_file, knowledge)
    panel = sorted(set(cases.truth) & set(knowledge.diseases["disease_id"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    out = tmp_path / "full"
    metrics = train_full.main([f"paths.knowledge={knowledge_dir}", f"full_model.out={out}",
                               f"full_model.report={tmp_path}/report.json", f"full_model.diseases=[{','.join(panel)}]",
                               "full_model.per_disease=6", "full_model.validation_per_disease=2",
                               "full_model.classifier.hidden_layers=[32]", "full_model.classifier.max_epochs=15",
                               "full_model.classifier.batch_size=32", "full_model.classifier.n_threads=1"])
    assert (out / "model.joblib").exists()
    assert json.loads((tmp_path / "report.json").read_text())["n_diseases"] == len(panel)
    assert 0 <= metrics["held_out_all_top1"] <= metrics["held_out_all_top10"] <= 1
    params = {"learned_model": str(out / "model.joblib"), "ablations": {}, "bayes": False}
    alone = run_rankers(cases, knowledge, None, params)
    known = np.isin(cases.truth, panel)
    assert np.isfinite(alone["ranks"]["learned"][known]).all() and np.isinf(alone["ranks"]["learned"][~known]).all()
    assert (alone["ranks"]["learned"][known] <= len(panel)).all()  # the model ranks only its panel
    weighted = run_rankers(cases, knowledge, None, {**params, "weights": {"learned": 1.0}})
    assert not np.array_equal(weighted["scores"], alone["scores"])  # the weight reaches the ensemble
    missing = run_rankers(cases, knowledge, None, {**params, "learned_model": str(tmp_path / "none.joblib")})
    assert "learned" not in missing["ranks"]  # a missing model file is skipped, not an error


@pytest.mark.skipif(not SHARED.exists(), reason="the shared case reports are not beside the project")
def test_reranker_on_real_cases_leaves_out_of_reach_cases_alone(tmp_path, knowledge):
    """The ensemble's second stage on 300 shared cases (its own reference, by folds of publications) and on a file
    of other cases (trained on the reference's scores, computed for it)."""
    from dxlab.external.evaluate import BEFORE_RERANK, read_cases, run_rankers

    lines = SHARED.read_text().splitlines()
    picked = random.Random(2).sample(lines, 320)
    (tmp_path / "ref.jsonl").write_text("\n".join(picked[:300]) + "\n")
    (tmp_path / "new.jsonl").write_text("\n".join(picked[300:]) + "\n")
    reference = read_cases(tmp_path / "ref.jsonl", knowledge)
    params = {"ablations": {}, "bayes": False, "rerank": {"n_candidates": 20, "min_training_cases": 20,
                                                          "n_estimators": 30}}
    result = run_rankers(reference, knowledge, reference, params)
    assert result["reranker"]["training_cases"] >= 20 and "ensemble_to_best" in result["reranker"]["features"]
    before, after = result["ranks"][BEFORE_RERANK], result["ranks"]["ensemble"]
    out_of_reach = before > 20
    np.testing.assert_array_equal(before[out_of_reach], after[out_of_reach])  # below the candidates, same order
    assert (after[~out_of_reach] <= 20).all() and not np.array_equal(before, after)
    new = read_cases(tmp_path / "new.jsonl", knowledge)
    other = run_rankers(new, knowledge, reference, params)
    assert other["reranker"]["training_cases"] == result["reranker"]["training_cases"]  # the same reference scores
    assert BEFORE_RERANK in other["ranks"] and len(other["ranks"]["ensemble"]) == 20

    # a file coded in Orphanet ids: ranked over Orphanet diseases, the reranker still learned from the OMIM
    # reference cases ranked over *their* universe (once it learned from references whose diseases were not
    # candidates, and pushed every Orphanet answer out of first place)
    ann = knowledge.annotations[~knowledge.annotations["negated"]]
    orpha = ann[ann["database"] == "ORPHA"].groupby("disease_id")["hpo_id"].apply(lambda t: sorted(set(t)))
    chosen = orpha[orpha.map(len) >= 15].index[:12]
    (tmp_path / "orpha.jsonl").write_text("".join(json.dumps(
        {"case_id": f"orpha-{i}", "pmid": f"PMID:{i}", "disease_id": d, "observed": orpha[d][:8]}) + "\n"
        for i, d in enumerate(chosen)))
    coded = run_rankers(read_cases(tmp_path / "orpha.jsonl", knowledge), knowledge, reference, params)
    assert coded["params"]["databases"] == ["ORPHA"]
    assert coded["reranker"]["training_cases"] == result["reranker"]["training_cases"]
    before, after = coded["ranks"][BEFORE_RERANK], coded["ranks"]["ensemble"]
    assert (before <= 3).mean() >= 0.75  # its own annotation: found
    assert (after <= 3).mean() >= (before <= 3).mean() - 1 / 12  # and the reranker keeps it there


def test_stage_without_the_case_file_still_writes_its_outputs(tmp_path):
    """A user without ../shared: `dvc repro` must not fail on missing outputs; they say why they are empty."""
    from dxlab.config import load_params
    from dxlab.stages import evaluate_external

    cfg = load_params([f"external.cases={tmp_path}/none.jsonl", f"external.out={tmp_path}/external",
                       f"external.report={tmp_path}/reports/external_validation.md", f"paths.reports={tmp_path}/reports"])
    assert evaluate_external.run(cfg) == {}
    report = (tmp_path / "reports" / "external_validation.md").read_text()
    assert "Skipped" in report and "none.jsonl" in report
    assert "Skipped" in (tmp_path / "reports" / "model_card.md").read_text()
    assert "skipped" in json.loads((tmp_path / "reports" / "stages" / "evaluate_external.json").read_text())
    assert (tmp_path / "external").is_dir()


def test_a_file_coded_in_orphanet_is_ranked_against_orphanet_diseases(tmp_path, knowledge, caplog):
    """`databases: auto` takes the namespaces of the file's own disease ids; ids no annotation uses are misses,
    with a warning that names them."""
    from dxlab.external.evaluate import read_cases, run_rankers, universe_databases

    ann = knowledge.annotations
    ann = ann[~ann["negated"]] if "negated" in ann else ann
    orpha = ann[ann["database"] == "ORPHA"].groupby("disease_id")["hpo_id"].apply(list)
    chosen = orpha[orpha.map(len) >= 15].index[:4]
    records = [{"case_id": f"orpha-{i}", "pmid": f"PMID:{i}", "disease_id": d, "sex": "UNKNOWN_SEX",
                "observed": sorted(orpha[d])[:8], "excluded": []} for i, d in enumerate(chosen)]
    records.append({"case_id": "mondo-1", "pmid": "PMID:9", "disease_id": "MONDO:0100062", "sex": "FEMALE",
                    "observed": sorted(orpha[chosen[0]])[:8], "excluded": []})
    path = tmp_path / "orpha.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    cases = read_cases(path, knowledge)
    params = {"bayes": False, "learned_model": None, "rerank": {"enabled": False}, "ablations": {}}
    with caplog.at_level("WARNING", logger="dxlab.external.evaluate"):
        results = run_rankers(cases, knowledge, None, params)
    assert results["params"]["databases"] == ["ORPHA"]
    assert all(u.startswith("ORPHA:") for u in results["universe"])
    ranks = results["ranks"]["likelihood"]
    assert np.isfinite(ranks[:4]).all() and (ranks[:4] <= 10).sum() >= 3  # its own annotation: found
    assert np.isinf(ranks[4])  # a MONDO id: no annotation uses it, a miss
    assert "MONDO (1)" in caplog.text and "outside the ranked universe" in caplog.text

    assert universe_databases(["OMIM"], cases.truth, knowledge) == ["OMIM"]  # an explicit choice stays
    assert universe_databases("auto", np.array(["OMIM:1", "ORPHA:2"]), knowledge) == ["OMIM", "ORPHA"]
    assert universe_databases("auto", np.array(["MONDO:1"]), knowledge) == ["OMIM"]  # nothing usable: the default
    caplog.clear()
    with caplog.at_level("WARNING", logger="dxlab.external.evaluate"):
        assert universe_databases("auto", np.array(["OMIM:1", "None"]), knowledge) == ["OMIM"]
    assert "no disease id (1)" in caplog.text
    with pytest.raises(ValueError, match="not annotated"):
        universe_databases(["MONDO"], cases.truth, knowledge)


def test_bad_case_rows_are_reported_and_quarantined_not_evaluated(tmp_path, knowledge, caplog):
    from dxlab.external.evaluate import quarantine, read_cases

    good = {"case_id": "PMID_1_1", "pmid": "PMID:1", "disease_id": "OMIM:147791", "sex": "FEMALE",
            "observed": ["HP:0000078", "HP:0000337"], "excluded": []}
    rows = [json.dumps(good), json.dumps(good | {"case_id": "PMID_1_2", "disease_id": None}),
            json.dumps(good | {"case_id": "PMID_1_3", "observed": ["HP:0000078", "HP:99"]}), "{broken"]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="dxlab.external.evaluate"):
        kept, n_quarantined = quarantine(read_cases(path, knowledge), tmp_path)
    assert n_quarantined == 2 and list(kept.table["patient_id"]) == ["PMID_1_1", "PMID_1_3"]
    assert len(kept.groups) == 2 and kept.table["findings"].iloc[1] == ["HP:0000078"]  # the bad term dropped
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert sorted(zip(issues["source_row"], issues["field"])) == [(2, "diagnosis"), (3, "findings"), (4, "row")]
    quarantined = pd.read_csv(tmp_path / "quarantine.csv")
    assert list(quarantined["source_row"]) == [2, 4] and (quarantined["source_file"] == "cases.jsonl").all()
    assert "cases.jsonl row 2 diagnosis" in caplog.text and "2 rows quarantined" in caplog.text

    path.write_text("{broken\n")
    with pytest.raises(ValueError, match="no cases left to evaluate"):
        quarantine(read_cases(path, knowledge), tmp_path)
