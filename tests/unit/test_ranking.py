"""Ranking metrics on a hand-made example."""

import numpy as np
import pytest

from dxlab.external.ranking import rank_of_truth, ranking_metrics


def test_rank_of_truth_with_ties_and_unknown_disease():
    classes = ["A", "B", "C", "D"]
    scores = np.array([
        [0.9, 0.5, 0.1, 0.0],  # truth A: rank 1
        [0.9, 0.5, 0.5, 0.0],  # truth C tied with B for 2nd-3rd: rank 2.5
        [0.2, 0.2, 0.2, 0.2],  # truth D tied with all four: rank 2.5 (no lucky top-1)
        [0.1, 0.2, 0.3, 0.4],  # truth X unknown: a miss
    ])
    ranks = rank_of_truth(scores, classes, ["A", "C", "D", "X"])
    assert list(ranks[:3]) == [1.0, 2.5, 2.5] and np.isinf(ranks[3])


def test_ranking_metrics_by_hand():
    ranks = np.array([1.0, 2.5, 2.5, np.inf, 11.0])
    m = ranking_metrics(ranks)
    assert m["n_cases"] == 5 and m["n_covered"] == 4
    assert m["top1"] == pytest.approx(1 / 5)
    assert m["top3"] == pytest.approx(3 / 5)
    assert m["top10"] == pytest.approx(3 / 5)
    assert m["covered_top3"] == pytest.approx(3 / 4)
    # MRR: (1 + 1/2.5 + 1/2.5 + 0 + 1/11) / 5
    assert m["mrr"] == pytest.approx((1 + 0.4 + 0.4 + 0 + 1 / 11) / 5)


def test_publication_of_a_case_from_pmid_field_case_id_or_file(tmp_path):
    import json

    import pandas as pd

    from dxlab.external.evaluate import publications

    lines = [{"case_id": "a", "pmid": "PMID:11", "disease_id": "OMIM:1", "observed": []},
             {"case_id": "PMID_22_patient_3", "disease_id": "OMIM:1", "observed": []},
             {"case_id": "c", "disease_id": "OMIM:1", "observed": []}]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    table = pd.DataFrame({"patient_id": ["a", "PMID_22_patient_3", "c"], "source_file": ["cases.jsonl"] * 3})
    assert list(publications(path, table)) == ["PMID:11", "PMID:22", "file:cases.jsonl"]


def test_merge_params_overrides_one_section_and_keeps_the_rest():
    from dxlab.external.evaluate import DEFAULT_PARAMS, merge_params

    merged = merge_params({"likelihood": {"mention_weight": 0.0}, "weights": {"cases": 0.0}})
    assert merged["likelihood"]["mention_weight"] == 0.0
    assert merged["likelihood"]["partial_match"] == DEFAULT_PARAMS["likelihood"]["partial_match"]
    assert merged["weights"]["cases"] == 0.0 and DEFAULT_PARAMS["weights"]["cases"] != 0.0  # defaults untouched
