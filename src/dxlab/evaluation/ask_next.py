"""'What to ask next' measured on real patients: hide part of each case report's findings, ask, and see.

For the shared case reports (the sources whose `evaluation` is "grouped"), in folds of publications (no publication
on both sides): a fresh diagnostic model per fold, fitted as the grouped sweep fits it
(`dxlab.stages.sweep.grouped_member`), on every usable row outside the held fold. For each held case with at least
two observed findings a seeded random share (`hide`) of them is hidden (at least one hidden, at least one left;
excluded findings all stay visible), the visible case is scored, and each strategy suggests `n_suggest` findings:

- ``information_gain``: `NextQuestions.suggest` over the top-k of the differential (what the API serves);
- ``most_frequent``: the baseline: the same candidate set (`NextQuestions.candidates`, for the top-1 disease only),
  ranked by P(t | top disease) (`NextQuestions.probabilities`), with the same ancestor/descendant de-duplication.

The patient "has" a suggested finding when it is a hidden finding or an ancestor of one (the true-path rule).
The had suggestions are then added as findings and the case scored again; the true disease's rank (over the whole
universe, `dxlab.evaluation.ranking`, ranked by the model's final score as `case_table` ranks) before and after,
beside the upper bound of adding every hidden finding back. A case without a had suggestion is not rescored: its
rank after is its rank before.

    python -m dxlab.evaluation.ask_next [--folds 5] [--hide 0.5] [--n 5] [--max-cases N] [--out reports]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from dxlab.evaluation.cv import grouped_folds
from dxlab.evaluation.ranking import ranking_metrics, ranks_at, true_columns

log = logging.getLogger(__name__)

STRATEGIES = {
    "information_gain": "expected information gain over the top diseases (NextQuestions.suggest, as served)",
    "most_frequent": "the most frequent findings of the top disease (same candidates, ranked by P(t | d))",
}
UPPER_BOUND = "all_hidden"


@dataclass
class AskNextResult:
    summary: dict  # what reports/ask_next.json holds
    cases: pd.DataFrame  # one row per evaluated case: fold, hidden/visible counts, suggestions, ranks
    train_groups: dict[int, set[str]] = field(default_factory=dict)  # fold -> the groups its model learned from


def hide_findings(findings, hide: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(visible, hidden): a random `hide` share of the distinct findings hidden, at least one of each side."""
    distinct = list(dict.fromkeys(findings))
    n_hidden = min(max(int(np.floor(hide * len(distinct) + 0.5)), 1), len(distinct) - 1)
    hidden = set(rng.choice(len(distinct), size=n_hidden, replace=False).tolist())
    return ([t for i, t in enumerate(distinct) if i not in hidden], [t for i, t in enumerate(distinct) if i in hidden])


def final_scores(model, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(final scores, calibrated probabilities), rows x classes_, batch by batch: one pass of the model for both
    (the ranks come from the scores, as `case_table` ranks; probabilities tie in the far tail)."""
    table = table.reset_index(drop=True)
    score = np.empty((len(table), len(model.classes_)), dtype=np.float32)
    proba = np.empty_like(score)
    for start in range(0, len(table), model.batch_size):
        part = table.iloc[start:start + model.batch_size]
        s, fold = model._final(part, None)  # new patients: the parts fitted on everything
        score[start:start + len(part)] = s
        proba[start:start + len(part)] = np.exp(model.calibrated(s, fold))
    return score, proba


def top_diseases(score: np.ndarray, proba: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row by score (best first) and their probabilities."""
    k = min(k, score.shape[1])
    best = np.argpartition(-score, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(score, best, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    return best, np.take_along_axis(proba, best, axis=1)


def most_frequent(questions, top: int, findings, excluded, n: int) -> list[str]:
    """The baseline: the candidates of the top disease, the n it most often has (the same de-duplication)."""
    disease = np.asarray([top], dtype=np.int64)
    terms = questions.candidates(disease, findings, excluded)
    if not len(terms):
        return []
    frequency = questions.probabilities(terms, disease)[:, 0]
    return [str(questions.core.encoder_.term_ids[terms[i]]) for i in questions._diverse(terms, frequency, n)]


def _fit(cfg: DictConfig, spec, rows: pd.DataFrame):
    """A fresh model fitted as the grouped sweep fits one (`grouped_cross_validation`)."""
    from dxlab.models.build import build_pipeline, takes_groups

    model = build_pipeline(cfg, spec)
    y = rows["diagnosis"].astype(str).to_numpy()
    if takes_groups(model):
        model.fit(rows, y, groups=rows["group_id"].astype(str).to_numpy())
    else:
        model.fit(rows, y)
    if getattr(model, "core_", None) is None:
        raise ValueError(f"model {spec.name!r} has no likelihood core: it suggests nothing to ask")
    return model


def evaluate_ask_next(cfg: DictConfig, n_splits: int = 5, hide: float = 0.5, n_suggest: int = 5, top_k: int = 10,
                      max_cases: int | None = None, seed: int | None = None) -> AskNextResult:
    """Module docstring. max_cases: a seeded sample of the eligible cases (the folds and the fits are unchanged)."""
    from dxlab.data.schema import read_parquet
    from dxlab.models.build import model_specs
    from dxlab.serving.ask_next import NextQuestions

    start = time.perf_counter()
    seed = int(cfg.seed if seed is None else seed)
    train = read_parquet(Path(cfg.paths.processed) / "train.parquet").reset_index(drop=True)
    lines = [n for n in cfg.data.sources if cfg.data.sources[n].get("evaluation", "holdout") == "grouped"]
    line = train["source"].isin(lines).to_numpy()
    if not line.any():
        raise ValueError(f"no rows of a grouped source ({lines}) in the training table")
    spec = next(s for s in model_specs(cfg) if s.role == "model")
    usable = train if spec.train_sources is None else train[train["source"].isin(spec.train_sources)]
    fold = np.full(len(train), -1)
    fold[line] = grouped_folds(train.loc[line, "diagnosis"], train.loc[line, "group_id"], n_splits, seed)
    eligible = np.flatnonzero(line & (train["findings"].map(lambda f: len(set(f))) >= 2).to_numpy())
    if max_cases is not None and max_cases < len(eligible):
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, size=max_cases, replace=False))
    # the hidden findings of a case depend on the seed and its row only (not on which other cases run)
    split = {int(i): hide_findings(train.at[i, "findings"], hide, np.random.default_rng([seed, int(i)]))
             for i in eligible}

    records, train_groups, fit_seconds = [], {}, 0.0
    for k in sorted(set(fold[eligible].tolist())):
        held = fold == k
        fit_rows = usable[~held[usable.index]].reset_index(drop=True)
        began = time.perf_counter()
        model = _fit(cfg, spec, fit_rows)
        fit_seconds += time.perf_counter() - began
        train_groups[int(k)] = set(fit_rows["group_id"].astype(str))
        cases = eligible[fold[eligible] == k]
        log.info("fold %d: fitted on %d rows in %.0f s; %d cases", k, len(fit_rows), time.perf_counter() - began,
                 len(cases))
        records.append(_evaluate_fold(model, NextQuestions(model), train.loc[cases], split, k, n_suggest, top_k))
    table = pd.concat(records, ignore_index=True)
    seconds = time.perf_counter() - start
    summary = summarise(table, n_suggest)
    summary["setup"] = {
        "model": spec.name, "lines": lines, "n_cases": int(len(table)),
        "n_publications": int(table["group_id"].nunique()), "n_folds": int(len(train_groups)),
        "hide": float(hide), "n_suggest": int(n_suggest), "top_k": int(top_k), "seed": seed,
        "max_cases": max_cases, "n_line_cases": int(line.sum()),
        "n_cases_fewer_than_2_findings": int((line & (train["findings"].map(lambda f: len(set(f))) < 2)).sum()),
        "n_cases_disease_unknown_to_model": int((~np.isfinite(table["rank_before"])).sum()),
        "mean_findings": round(float(table["n_findings"].mean()), 2),
        "mean_hidden": round(float(table["n_hidden"].mean()), 2),
        "universe_size": int(table["universe_size"].iloc[0]) if len(table) else 0,
        "seconds": round(seconds, 1), "fit_seconds": round(fit_seconds, 1)}
    summary = {"setup": summary.pop("setup"), **summary}
    return AskNextResult(summary, table, train_groups)


def _evaluate_fold(model, questions, cases: pd.DataFrame, split: dict, k: int, n_suggest: int,
                   top_k: int) -> pd.DataFrame:
    """One fold's held cases: score the visible halves at once, suggest case by case, rescore at once."""
    encoder = questions.core.encoder_
    classes = np.asarray(model.classes_).astype(str)
    visible_findings = [split[int(i)][0] for i in cases.index]
    hidden_findings = [split[int(i)][1] for i in cases.index]
    visible = cases.assign(findings=visible_findings).reset_index(drop=True)
    truth = true_columns(list(classes), visible["diagnosis"].astype(str).tolist())
    score, proba = final_scores(model, visible)
    rank_before = ranks_at(score, truth)
    top, top_p = top_diseases(score, proba, top_k)
    del score, proba
    # what the patient has: the hidden findings and every ancestor of one (true-path rule)
    has = encoder.matrix(hidden_findings, propagate=True)
    out = pd.DataFrame({"case_id": visible["patient_id"].astype(str), "group_id": visible["group_id"].astype(str),
                        "fold": k, "true_disease": visible["diagnosis"].astype(str),
                        "n_findings": [len(v) + len(h) for v, h in zip(visible_findings, hidden_findings)],
                        "n_hidden": [len(h) for h in hidden_findings], "hidden": hidden_findings,
                        "rank_before": rank_before,
                        "universe_size": len(classes)})
    excluded = [list(e) for e in visible["excluded"]]
    for name in STRATEGIES:
        suggested, had = [], []
        for i in range(len(visible)):
            if name == "information_gain":
                terms = [s["hpo_id"] for s in questions.suggest(visible_findings[i], excluded[i], classes[top[i]],
                                                                 top_p[i], n_suggest)]
            else:
                terms = most_frequent(questions, int(top[i, 0]), visible_findings[i], excluded[i], n_suggest)
            row = set(has.indices[has.indptr[i]:has.indptr[i + 1]].tolist())
            suggested.append(terms)
            had.append([t for t in terms if encoder.index[t] in row])
        rescored = np.asarray([len(h) > 0 for h in had], dtype=bool)
        after = rank_before.copy()
        if rescored.any():  # only the cases with a had suggestion are scored again
            more = visible[rescored].assign(findings=[visible_findings[i] + had[i] for i in np.flatnonzero(rescored)])
            after[rescored] = ranks_at(final_scores(model, more)[0], truth[rescored])
        out[f"{name}_suggested"] = suggested
        out[f"{name}_had"] = had
        out[f"{name}_rescored"] = rescored
        out[f"{name}_rank_after"] = after
    full = cases.reset_index(drop=True)  # every hidden finding added back: the case as reported
    out[f"{UPPER_BOUND}_rank_after"] = ranks_at(final_scores(model, full)[0], truth)
    return out


def _change(before: np.ndarray, after: np.ndarray) -> dict:
    """Rank change (before - after: positive = the true disease moved up) over the cases the model can rank."""
    known = np.isfinite(before) & np.isfinite(after)
    change = before[known] - after[known]
    return {"mean_rank_change": float(change.mean()) if len(change) else None,
            "median_rank_change": float(np.median(change)) if len(change) else None,
            "share_improved": float(np.mean(change > 0)) if len(change) else None,
            "share_worsened": float(np.mean(change < 0)) if len(change) else None}


def _ranks(ranks: np.ndarray) -> dict:
    m = ranking_metrics(ranks)
    return {"top1": m["top1"], "top3": m["top3"], "top10": m["top10"], "mrr": m["mrr"],
            "median_rank": m["median_rank_covered"]}


def summarise(table: pd.DataFrame, n_suggest: int) -> dict:
    before = table["rank_before"].to_numpy(dtype=float)
    out: dict = {"before": _ranks(before), "strategies": {}}
    for name, description in STRATEGIES.items():
        n_suggested = table[f"{name}_suggested"].map(len).to_numpy()
        n_had = table[f"{name}_had"].map(len).to_numpy()
        after = table[f"{name}_rank_after"].to_numpy(dtype=float)
        rescored = table[f"{name}_rescored"].to_numpy(dtype=bool)
        out["strategies"][name] = {
            "description": description,
            "share_cases_with_a_had_suggestion": float(np.mean(n_had > 0)),
            "mean_suggested": float(n_suggested.mean()), "mean_had": float(n_had.mean()),
            "precision": float(n_had.sum() / n_suggested.sum()) if n_suggested.sum() else None,
            "n_rescored": int(rescored.sum()), "after": _ranks(after), "rank_change": _change(before, after),
            "rank_change_when_had": _change(before[rescored], after[rescored])}
    after = table[f"{UPPER_BOUND}_rank_after"].to_numpy(dtype=float)
    out["all_hidden_added_back"] = {"after": _ranks(after), "rank_change": _change(before, after)}
    return out


# -- report ------------------------------------------------------------------------------------------------------
def _cell(value, kind: str = "share") -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{value:.3f}"
    return f"{value:+.1f}" if kind == "change" else f"{value:.1f}"


def markdown(summary: dict) -> str:
    s, before, strategies = summary["setup"], summary["before"], summary["strategies"]
    upper = summary["all_hidden_added_back"]
    columns = ["visible findings only", "+ had information-gain suggestions",
               "+ had most-frequent-of-top-disease suggestions", "+ all hidden findings (upper bound)"]
    ig, mf = strategies["information_gain"], strategies["most_frequent"]
    rows = [(f"cases with >= 1 of the {s['n_suggest']} suggestions had", None,
             ig["share_cases_with_a_had_suggestion"], mf["share_cases_with_a_had_suggestion"], None, "share"),
            (f"suggestions had per case (of {s['n_suggest']})", None, ig["mean_had"], mf["mean_had"], None, "number"),
            ("precision (had / suggested)", None, ig["precision"], mf["precision"], None, "share")]
    for key, label in (("top1", "top-1"), ("top3", "top-3"), ("top10", "top-10"), ("mrr", "MRR")):
        rows.append((label, before[key], ig["after"][key], mf["after"][key], upper["after"][key], "share"))
    rows.append(("median rank of the true disease", before["median_rank"], ig["after"]["median_rank"],
                 mf["after"]["median_rank"], upper["after"]["median_rank"], "number"))
    for key, label in (("mean_rank_change", "mean rank change (positive = up)"),
                       ("median_rank_change", "median rank change")):
        rows.append((label, None, ig["rank_change"][key], mf["rank_change"][key], upper["rank_change"][key],
                     "change"))
    rows.append(("share of cases whose true disease moved up", None, ig["rank_change"]["share_improved"],
                 mf["rank_change"]["share_improved"], upper["rank_change"]["share_improved"], "share"))
    lines = ["# What to ask next, measured on the case reports", "",
             "| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(_cell(v, kind) for v in values) + " |"
              for label, *values, kind in rows]
    lines += ["", (
        f"Measured on {s['n_cases']} case reports ({s['n_publications']} publications; cases with at least two "
        f"observed findings) of {', '.join(s['lines'])}, in {s['n_folds']} folds by publication: each fold's cases "
        f"scored by a `{s['model']}` model fitted without any case of their publications. In each case "
        f"{s['hide']:.0%} of the observed findings (mean {s['mean_findings']:.1f}; mean {s['mean_hidden']:.1f} "
        f"hidden; excluded findings all kept) were hidden at random; the visible rest was scored and "
        f"{s['n_suggest']} findings were suggested, by expected information gain over the top {s['top_k']} "
        f"diseases (what the API serves) and, as the baseline, by frequency in the top disease among the same "
        f"candidates. A suggestion counts as had when it is a hidden finding or one of its ancestors; the had "
        f"suggestions were then added and the case scored again (a case with none keeps its rank). Ranks are over "
        f"the model's whole universe (the first fold's: {s['universe_size']} diseases; {s['n_cases_disease_unknown_to_model']} cases "
        f"whose disease it cannot know count as misses and are left out of the rank changes). The last column "
        f"adds every hidden finding back. Seed {s['seed']}; {s['seconds']:.0f} s "
        f"({s['fit_seconds']:.0f} s fitting).")]
    return "\n".join(lines) + "\n"


def write_report(result: AskNextResult, out_dir: str | Path) -> tuple[Path, Path]:
    from dxlab.stages._runner import write_json

    out_dir = Path(out_dir)
    json_path = write_json(result.summary, out_dir / "ask_next.json")
    md_path = out_dir / "ask_next.md"
    md_path.write_text(markdown(result.summary))
    return json_path, md_path


def main(argv=None) -> int:
    from dxlab.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5, help="folds of publications")
    parser.add_argument("--hide", type=float, default=0.5, help="share of each case's observed findings hidden")
    parser.add_argument("--n", type=int, default=5, help="findings suggested per case")
    parser.add_argument("--top-k", type=int, default=10, help="diseases of the differential suggestions separate")
    parser.add_argument("--max-cases", type=int, default=None, help="a seeded sample of the cases (development)")
    parser.add_argument("--seed", type=int, default=None, help="default: the config's seed")
    parser.add_argument("--out", default=None, help="folder of ask_next.json/.md (default: the config's reports)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_params(args.overrides)
    result = evaluate_ask_next(cfg, args.folds, args.hide, args.n, args.top_k, args.max_cases, args.seed)
    _, md_path = write_report(result, args.out or cfg.paths.reports)
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
