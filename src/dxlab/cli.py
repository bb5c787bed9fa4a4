"""`dxlab` command line: small helpers around the pipeline (the stages themselves run under DVC)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dxlab.config import PARAMS_FILE, compose, project_root, write_params


def cmd_params(args: argparse.Namespace) -> int:
    """Compose conf/ (with overrides) into params.yaml, as `dvc exp run -S` does."""
    root = project_root()
    cfg = compose(args.overrides)
    write_params(cfg, root / PARAMS_FILE)
    print(f"wrote {root / PARAMS_FILE}" + (f" with {' '.join(args.overrides)}" if args.overrides else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print the metrics table of the last pipeline run and how to open the MLflow UI."""
    from dxlab.tracking.mlflow_tracking import tracking_uri

    table = project_root() / "reports" / "metrics.md"
    if not table.exists():
        print("no metrics yet: run `make repro`", file=sys.stderr)
        return 1
    print("\nMetrics of the default run (test split; strata by training patients of the true disease):\n")
    print(table.read_text())
    print(f"Open the MLflow UI with `make ui` (store {tracking_uri()}), then http://127.0.0.1:5000")
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    """Copy the metrics table of the last run into README.md, between the metrics markers."""
    root = project_root()
    table = root / "reports" / "metrics.md"
    if not table.exists():
        print("no metrics yet: run `make repro`", file=sys.stderr)
        return 1
    readme = root / "README.md"
    blocks = {}
    evaluation = root / "reports" / "metrics.json"
    if evaluation.exists():
        blocks["results"] = _evaluation_table(json.loads(evaluation.read_text()))
    anomaly_stage = root / "reports" / "stages" / "anomaly.json"
    if anomaly_stage.exists():
        blocks["anomaly"] = _anomaly_table(json.loads(anomaly_stage.read_text()))
    ddxplus = root / "reports" / "ddxplus" / "summary.md"
    if ddxplus.exists():
        blocks["ddxplus"] = ddxplus.read_text().strip()
    sweep = root / "reports" / "sweep" / "summary.md"
    if sweep.exists():
        blocks["sweep"] = sweep.read_text().split("\n", 1)[1].strip()
    results = root / "bench" / "results.md"
    if results.exists():
        blocks["bench"] = results.read_text().split("\n", 1)[1].strip()
    production = root / "bench" / "production.md"
    if production.exists():
        text = production.read_text()
        blocks["production"] = text.split("\n", 1)[1].strip().replace("\n## ", "\n#### ")
    external_bench = root / "bench" / "external.md"
    if external_bench.exists():
        blocks["external-bench"] = external_bench.read_text().split("\n", 1)[1].strip()
    for name, report in (("anomaly-selection", "anomaly_selection.md"),
                         ("anomaly-selection-clinical", "anomaly_selection_clinical.md")):
        selection = root / "bench" / report
        if selection.exists():
            blocks[name] = selection.read_text().split("\n", 1)[1].strip().replace("\n## ", "\n#### ")
    for name, report in (("anomaly-benchmark", "anomaly_benchmark.md"),
                         ("anomaly-benchmark-adbench", "anomaly_benchmark_adbench.md")):
        bench = root / "reports" / report
        if bench.exists():
            blocks[name] = _section(bench.read_text(), "## `auto` against the published")
    text = readme.read_text()
    for name, body in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text or end not in text:
            print(f"README.md lacks the {start} / {end} markers", file=sys.stderr)
            return 1
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{body}\n{end}{tail}"
    readme.write_text(text)
    print(f"updated {readme}")
    return 0


def _section(markdown: str, heading: str) -> str:
    """The body of one `## ` section of a Markdown file (without its heading)."""
    body = markdown.split(heading, 1)[1].split("\n", 1)[1]
    return body.split("\n## ", 1)[0].strip()


def _anomaly_table(stage: dict) -> str:
    lines = [f"`{stage['detector']}` on {stage['n_test']:,} test patients, {stage['n_injected']} with an injected "
             f"anomaly: ROC-AUC {stage['roc_auc']:.3f}, PR-AUC {stage['pr_auc']:.3f}, precision "
             f"{stage['precision']:.3f}, recall {stage['recall']:.3f}, F1 {stage['f1']:.3f} at the threshold.", "",
             "| injected kind | recall |", "|---|---|"]
    lines += [f"| {kind} | {recall:.2f} |" for kind, recall in stage["recall_by_kind"].items()]
    return "\n".join(lines)


def _evaluation_table(metrics: dict) -> str:
    """The README's results table: every model on every evaluation line (overall)."""
    lines = ["| model | evaluated on | cases | top-1 | top-3 | top-10 | MRR | ECE | Brier |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, by_line in metrics.items():
        for line, m in by_line.items():
            o = m["overall"]
            lines.append(f"| {model} | {line} | {o['n']:,} | {o['top1']:.1%} | {o['top3']:.1%} | {o['top10']:.1%} | "
                         f"{o['mrr']:.3f} | {o['ece']:.3f} | {o['brier']:.3f} |")
    return "\n".join(lines)


def cmd_promote(args: argparse.Namespace) -> int:
    """Point an alias (default champion) at a registered model version, as in the MLflow UI."""
    import mlflow

    from dxlab.tracking.mlflow_tracking import tracking_uri
    from dxlab.tracking.registry import promote

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    promote(client, args.name, args.version, args.alias)
    print(f"{args.name}@{args.alias} -> version {args.version}")
    return 0


def cmd_evaluate_external(args: argparse.Namespace) -> int:
    """Rank every disease of the model's universe for each case of a JSONL or phenopacket folder (the champion by
    default); write metrics.json, ranks.csv, external_validation.md, model_card.md and figures/ into --out."""
    from omegaconf import OmegaConf

    from dxlab.config import load_params
    from dxlab.evaluation.external import evaluate_case_file
    from dxlab.serving.scorer import resolve_model
    from dxlab.tracking.mlflow_tracking import tracking_uri

    cfg = load_params(args.overrides)
    if args.reference is not None:
        print("evaluate-external: --reference is no longer needed: the model's own training cases are its "
              "reference (a case of a training publication is scored without it)", file=sys.stderr)
    spec = args.model or cfg.serve.model
    handle = resolve_model(spec, cfg.paths.models, tracking_uri(cfg), fallback=None if args.model else cfg.model.name)
    summary = evaluate_case_file(handle.model, args.cases, args.out, handle.name, handle.version,
                                 OmegaConf.to_container(cfg.evaluate.strata), int(cfg.evaluate.calibration_bins),
                                 cfg.paths.knowledge)
    print(f"\n{handle.name} {handle.version} on {args.cases}: {summary['n_cases']:,} cases, top-1 "
          f"{summary['top1']:.1%}, top-3 {summary['top3']:.1%}, top-10 {summary['top10']:.1%}, MRR "
          f"{summary['mrr']:.3f}, ECE {summary['ece']:.3f}; report {Path(args.out) / 'external_validation.md'}")
    for name, m in summary.get("side_by_side", {}).items():
        print(f"  {name:40s} top1 {m['top1']:.3f}  top10 {m['top10']:.3f}")
    return 0


def cmd_anomaly_benchmark(args: argparse.Namespace) -> int:
    """Anomaly detectors on labelled tables (ADBench .npz files) against the published scores."""
    from dxlab.anomaly.benchmark import main as benchmark

    return benchmark(args.args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dxlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help=cmd_params.__doc__)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=knowledge_ranker")
    p.set_defaults(func=cmd_params)
    p = sub.add_parser("report", help=cmd_report.__doc__)
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("promote", help=cmd_promote.__doc__)
    p.add_argument("--version", required=True, help="registered model version")
    p.add_argument("--alias", default="champion")
    p.add_argument("--name", default="dxlab", help="registered model name (tracking.registered_model)")
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("evaluate-external", help=cmd_evaluate_external.__doc__)
    p.add_argument("--cases", required=True, help="cases.jsonl or a folder of GA4GH phenopacket JSON files")
    p.add_argument("--out", required=True, help="output folder: metrics.json, ranks.csv, external_validation.md, "
                   "model_card.md, figures/, issues.csv (input problems), quarantine.csv (rows not evaluated)")
    p.add_argument("--model", default=None, help="registry URI (models:/dxlab@champion, the default: serve.model), "
                   "a .joblib path, or a model name under paths.models")
    p.add_argument("--reference", default=None, help=argparse.SUPPRESS)  # obsolete: the model's training cases are
    p.add_argument("overrides", nargs="*", help="dotted overrides of params.yaml, e.g. paths.knowledge=DIR")
    p.set_defaults(func=cmd_evaluate_external)
    p = sub.add_parser("anomaly-benchmark", help=cmd_anomaly_benchmark.__doc__, add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="see `dxlab anomaly-benchmark --help`")
    p.set_defaults(func=cmd_anomaly_benchmark)
    p = sub.add_parser("readme", help=cmd_readme.__doc__)
    p.set_defaults(func=cmd_readme)
    from dxlab.text.commands import add_command as add_annotate  # free text -> HPO findings (issue 16)

    add_annotate(sub)
    from dxlab.serving.commands import add_commands  # predict, serve, monitor, retrain

    add_commands(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["anomaly-benchmark"]:  # its own parser: every option goes through untouched
        return cmd_anomaly_benchmark(argparse.Namespace(args=argv[1:]))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
