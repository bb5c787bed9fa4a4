"""`dxlab evaluate-external`: the champion (or a named model) on any case file, leave-publication-out for the
model's own training publications, the side-by-side report, and bad rows quarantined."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED_CASES, require

from dxlab.cli import main as cli
from dxlab.evaluation.external import quarantine, read_cases

pytestmark = pytest.mark.integration


def test_the_command_on_cases_of_new_publications(tiny_project, tmp_path):
    """Cases of publications the model never trained on: the command's files, keys and report."""
    root, cfg, _ = tiny_project
    trained = {json.loads(line)["pmid"] for line in (root / "cases.jsonl").open()}
    lines = [line for line in require(SHARED_CASES, "the shared case reports").open()
             if json.loads(line)["pmid"] not in trained][:25]
    (tmp_path / "new.jsonl").write_text("".join(lines))
    out = tmp_path / "out"
    assert cli(["evaluate-external", "--cases", str(tmp_path / "new.jsonl"), "--out", str(out),
                "--model", str(root / "models" / "diagnostic.joblib"), f"paths.knowledge={cfg.paths.knowledge}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the keys the command always wrote, and the new ones
    for key in ("n_cases", "top1", "top3", "top10", "mrr", "n_covered", "covered_top1", "covered_top10",
                "median_rank_covered", "n_parse_issues", "n_quarantined", "universe_size", "ece", "brier"):
        assert key in metrics, key
    assert metrics["n_cases"] == 25 and metrics["n_training_groups_seen"] == 0
    assert metrics["universe_size"] > 12000 and 0 <= metrics["top1"] <= metrics["top10"] <= 1
    assert {"likelihood from the annotations alone", "without the reranker"} <= set(metrics["side_by_side"])
    ranks = pd.read_csv(out / "ranks.csv")
    assert len(ranks) == 25 and {"case_id", "group", "true_disease", "rank", "p_truth", "top10"} <= set(ranks.columns)
    report = (out / "external_validation.md").read_text()
    assert "Each part alone" in report and "Model card" in (out / "model_card.md").read_text()
    assert (out / "figures" / "topk.png").exists() and (out / "figures" / "reliability.png").exists()


def test_a_training_publication_is_scored_without_it(tiny_project, tmp_path):
    """The model's own training cases: each scored by what never saw its publication, not from memory."""
    from dxlab.evaluation.external import evaluate_case_file
    from dxlab.models.build import load_model

    root, _, _ = tiny_project
    model = load_model(root / "models", "diagnostic")
    summary = evaluate_case_file(model, root / "cases.jsonl", tmp_path / "own")
    # every case but one the validate stage quarantined (an id newer than the knowledge) is a training case
    assert summary["n_cases"] > 100 and summary["n_training_groups_seen"] >= summary["n_cases"] - 1
    ranks = pd.read_csv(tmp_path / "own" / "ranks.csv")
    # a disease only its own publication reports is unknown to the scores of that publication's cases
    alone = ranks[~ranks["annotated"] & (ranks["training_rows"] == 0)]
    assert len(alone) and (alone["rank"] > 10).mean() > 0.9
    # scored as new patients, the same cases are found from memory: a far higher top-1 (what masking prevents)
    table, _ = read_cases(root / "cases.jsonl", model.core_.encoder_.normalise)
    table = table[table["patient_id"].isin(ranks["case_id"])].reset_index(drop=True)
    remembered = np.mean(model.predict(table) == table["diagnosis"].to_numpy())
    assert remembered > summary["top1"] + 0.1


def test_a_file_coded_in_orphanet_is_ranked_in_the_same_universe(tiny_project, knowledge, tmp_path):
    from dxlab.evaluation.external import evaluate_case_file
    from dxlab.models.build import load_model

    root, _, _ = tiny_project
    ann = knowledge.annotations
    ann = ann[(ann["aspect"] == "P") & ~ann["negated"] & (ann["frequency"] >= 0.5)]
    orpha = ann[ann["database"] == "ORPHA"].groupby("disease_id")["hpo_id"].apply(list)
    chosen = orpha[orpha.map(len) >= 15].index[:4]
    records = [{"case_id": f"orpha-{i}", "pmid": f"PMID:9{i}", "disease_id": d, "sex": "UNKNOWN_SEX",
                "observed": sorted(orpha[d])[:8], "excluded": []} for i, d in enumerate(chosen)]
    records.append({"case_id": "mondo-1", "pmid": "PMID:99", "disease_id": "MONDO:0100062", "sex": "FEMALE",
                    "observed": sorted(orpha[chosen[0]])[:8], "excluded": []})
    path = tmp_path / "orpha.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    evaluate_case_file(load_model(root / "models", "diagnostic"), path, tmp_path / "orpha")
    ranks = pd.read_csv(tmp_path / "orpha" / "ranks.csv")["rank"].to_numpy(dtype=float)
    assert (ranks[:4] <= 10).sum() >= 3  # its own annotation: found among every OMIM and Orphanet disease
    assert np.isinf(ranks[4])  # a MONDO id: outside the universe, a miss


def test_bad_case_rows_are_reported_and_quarantined_not_evaluated(tmp_path, knowledge, caplog):
    good = {"case_id": "PMID_1_1", "pmid": "PMID:1", "disease_id": "OMIM:147791", "sex": "FEMALE",
            "observed": ["HP:0000078", "HP:0000337"], "excluded": []}
    rows = [json.dumps(good), json.dumps(good | {"case_id": "PMID_1_2", "disease_id": None}),
            json.dumps(good | {"case_id": "PMID_1_3", "observed": ["HP:0000078", "HP:99"]}), "{broken"]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="dxlab.evaluation.external"):
        kept, n_quarantined = quarantine(*read_cases(path, knowledge.normalise_term), tmp_path)
    assert n_quarantined == 2 and list(kept["patient_id"]) == ["PMID_1_1", "PMID_1_3"]
    assert kept["findings"].iloc[1] == ["HP:0000078"]  # the bad term dropped, the row kept
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert sorted(zip(issues["source_row"], issues["field"])) == [(2, "diagnosis"), (3, "findings"), (4, "row")]
    quarantined = pd.read_csv(tmp_path / "quarantine.csv")
    assert list(quarantined["source_row"]) == [2, 4] and (quarantined["source_file"] == "cases.jsonl").all()
    assert "cases.jsonl row 2 diagnosis" in caplog.text and "2 rows quarantined" in caplog.text

    path.write_text("{broken\n")
    with pytest.raises(ValueError, match="no cases left to evaluate"):
        quarantine(*read_cases(path, knowledge.normalise_term), tmp_path)
