"""'What to ask next' judged on held-out publications of the tiny project's case reports."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.integration

N_SUGGEST = 3


@pytest.fixture(scope="module")
def evaluated(tiny_project, tmp_path_factory):
    """(result, rows scored per call of the model, report folder): two folds, a sample of the cases."""
    import dxlab.evaluation.ask_next as ask_next

    _, cfg, _ = tiny_project
    scored, real = [], ask_next.final_scores

    def counting(model, table):
        scored.append(len(table))
        return real(model, table)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ask_next, "final_scores", counting)
        result = ask_next.evaluate_ask_next(cfg, n_splits=2, hide=0.5, n_suggest=N_SUGGEST, top_k=5, max_cases=60)
    out = tmp_path_factory.mktemp("ask_next")
    ask_next.write_report(result, out)
    return result, scored, out


def test_no_publication_is_on_both_sides_of_a_fold(evaluated):
    result, _, _ = evaluated
    cases = result.cases
    assert len(cases) == 60 and result.summary["setup"]["n_folds"] == 2 == len(result.train_groups)
    assert cases.groupby("group_id")["fold"].nunique().max() == 1
    for fold, learned_from in result.train_groups.items():
        held = set(cases.loc[cases["fold"] == fold, "group_id"])
        assert held and not held & learned_from
    # something was hidden and something left visible in every case
    assert ((cases["n_hidden"] >= 1) & (cases["n_hidden"] < cases["n_findings"])).all()


def test_a_suggestion_is_had_exactly_when_it_is_a_hidden_finding_or_an_ancestor_of_one(evaluated, knowledge):
    cases = evaluated[0].cases
    for name in ("information_gain", "most_frequent"):
        for hidden, suggested, had in zip(cases["hidden"], cases[f"{name}_suggested"], cases[f"{name}_had"]):
            has = knowledge.propagate(filter(None, map(knowledge.normalise_term, hidden)))
            assert len(suggested) <= N_SUGGEST and len(set(suggested)) == len(suggested)
            assert had == [t for t in suggested if t in has]
    # the baseline suggests for (nearly) every case: an empty column would make the checks above vacuous
    assert cases["most_frequent_suggested"].map(len).mean() > 1


def test_every_number_is_in_range_and_only_cases_with_a_had_suggestion_are_rescored(evaluated):
    result, scored, _ = evaluated
    cases, summary = result.cases, result.summary
    n_rescored = 0
    for name in ("information_gain", "most_frequent"):
        rescored = cases[f"{name}_rescored"].to_numpy()
        assert (rescored == cases[f"{name}_had"].map(bool).to_numpy()).all()
        unchanged = cases.loc[~rescored]
        assert (unchanged[f"{name}_rank_after"] == unchanged["rank_before"]).all()
        n_rescored += int(rescored.sum())
        s = summary["strategies"][name]
        assert s["n_rescored"] == int(rescored.sum())
        assert 0.0 <= s["share_cases_with_a_had_suggestion"] <= 1.0
        assert 0.0 <= s["mean_had"] <= s["mean_suggested"] <= N_SUGGEST
        assert s["precision"] is None or 0.0 <= s["precision"] <= 1.0
        for ranks in (s["after"], summary["before"]):
            assert 0.0 <= ranks["top1"] <= ranks["top3"] <= ranks["top10"] <= 1.0
            assert 0.0 < ranks["mrr"] <= 1.0 and ranks["median_rank"] >= 1.0
        assert 0.0 <= s["rank_change"]["share_improved"] + s["rank_change"]["share_worsened"] <= 1.0
    # the model scored the visible cases, the rescored ones of each strategy and the full cases: nothing else
    assert sum(scored) == 2 * len(cases) + n_rescored
    # every hidden finding back: the case as reported, what a suggestion can at best recover
    assert np.isfinite(cases["rank_before"]).sum() == np.isfinite(cases["all_hidden_rank_after"]).sum()


def test_the_report_has_both_strategies(evaluated):
    result, _, out = evaluated
    saved = json.loads((out / "ask_next.json").read_text())
    assert set(saved["strategies"]) == {"information_gain", "most_frequent"}
    assert saved == json.loads(json.dumps(result.summary))
    assert saved["setup"]["n_cases"] == 60 and saved["setup"]["n_publications"] == result.cases["group_id"].nunique()
    text = (out / "ask_next.md").read_text()
    assert "information-gain" in text and "most-frequent" in text and "upper bound" in text
