"""Stage `evaluate_external`: rank every known disease for real case reports (leave-publication-out).

    python -m dxlab.stages.evaluate_external external.cases=PATH external.out=DIR
    dxlab evaluate-external --cases PATH --out DIR
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.external.evaluate import BEFORE_RERANK, evaluate_external
from dxlab.external.report import write_report
from dxlab.knowledge.base import Knowledge
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_artifact


def run(cfg: DictConfig, stage_file: bool = True) -> dict:
    """Evaluate; as the DVC stage (stage_file) also write reports/stages/evaluate_external.json."""
    ext = cfg.external
    if not Path(ext.cases).exists():  # the shared real cases are optional for a user of the project
        print(f"evaluate_external: {ext.cases} not found, skipped (set external.cases to your case file)")
        Path(ext.out).mkdir(parents=True, exist_ok=True)
        if stage_file:  # the stage's declared outputs exist either way, saying why they are empty
            write_json({"skipped": f"{ext.cases} not found"},
                       Path(cfg.paths.reports) / "stages" / "evaluate_external.json")
            note = (f"Skipped: the case file `{ext.cases}` was not found, so nothing was evaluated. Put the shared "
                    "case reports beside the project (`../shared/data/phenopackets/cases.jsonl`) or set "
                    "`external.cases`, then run `make external`.\n")
            report = Path(ext.report)
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text("# External validation on published case reports\n\n" + note)
            (report.parent / "model_card.md").write_text("# Model card\n\n" + note)
        return {}
    if not (Path(cfg.paths.knowledge) / "terms.parquet").exists():
        raise SystemExit(f"evaluate_external: no knowledge tables in {cfg.paths.knowledge}; "
                         "run `make repro` (or `dvc repro knowledge`) first, or pass paths.knowledge=DIR")
    metrics = evaluate_external(ext.cases, ext.out, cfg.paths.knowledge, ext.get("reference_cases"),
                                OmegaConf.to_container(ext.rankers, resolve=True))
    # the DVC stage writes the project report; a command run on any file reports into its own folder
    report = Path(ext.report) if stage_file else Path(ext.out) / "external_validation.md"
    write_report(ext.out, report, Path(ext.out) / "figures", Knowledge.load(cfg.paths.knowledge).disease_names)
    for path in (Path(ext.out) / "metrics.json", Path(ext.out) / "ranks.csv", report):
        log_artifact(path)
    headline = {k: metrics[k] for k in ("n_cases", "top1", "top3", "top10", "mrr", "n_covered", "covered_top1",
                                        "covered_top3", "covered_top10")}
    before = {k: v for k, v in metrics["ablations"].items() if k == BEFORE_RERANK}
    if stage_file:
        write_json({"ensemble": headline, **{k: v for k, v in metrics["by_ranker"].items() if k != "ensemble"},
                    **before}, Path(cfg.paths.reports) / "stages" / "evaluate_external.json")
    print("\nExternal validation (all cases; unknown diseases count as misses):")
    for name, m in {**metrics["by_ranker"], **metrics["ablations"]}.items():
        print(f"  {name:10s} top1 {m['top1']:.3f}  top3 {m['top3']:.3f}  top10 {m['top10']:.3f}  "
              f"mrr {m['mrr']:.3f}  covered {m['n_covered']}/{m['n_cases']}")
    logged = {**metrics["by_ranker"], **{"ensemble_before_reranker": m for m in before.values()}}  # beside the rankers
    out = {name: {k: v for k, v in m.items() if isinstance(v, (int, float))} for name, m in logged.items()}
    # counts only: the problems themselves (DIR/issues.csv) name rows and values of the input, not for MLflow
    out["input"] = {"n_parse_issues": metrics["n_parse_issues"], "n_quarantined": metrics["n_quarantined"]}
    return out


def main() -> None:
    main_for("evaluate_external", run)


if __name__ == "__main__":
    main()
