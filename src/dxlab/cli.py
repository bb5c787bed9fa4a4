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
    blocks = {"metrics": table.read_text().strip()}
    external = root / "reports" / "stages" / "evaluate_external.json"
    if external.exists():
        blocks["external"] = _external_table(json.loads(external.read_text()))
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


def _external_table(stage: dict) -> str:
    if "skipped" in stage:
        return f"(skipped: {stage['skipped']})"
    lines = ["| ranker | top-1 | top-3 | top-10 | MRR | covered cases | covered top-1 | covered top-10 |",
             "|---|---|---|---|---|---|---|---|"]
    from dxlab.external.evaluate import BEFORE_RERANK, RANKERS

    for name in (*RANKERS[:-1], BEFORE_RERANK, "ensemble"):
        m = stage.get(name)
        if m:
            lines.append(f"| {name} | {m['top1']:.1%} | {m['top3']:.1%} | {m['top10']:.1%} | {m['mrr']:.3f} | "
                         f"{m['n_covered']:,} / {m['n_cases']:,} | {m['covered_top1']:.1%} | {m['covered_top10']:.1%} |")
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
    """Rank every known disease for each case of a JSONL or phenopacket folder; write metrics.json, ranks.csv."""
    from dxlab.config import load_params
    from dxlab.stages import evaluate_external

    overrides = [f"external.cases={args.cases}", f"external.out={args.out}"]
    if args.reference is not None:
        overrides.append(f"external.reference_cases={args.reference}")
    evaluate_external.run(load_params([*overrides, *args.overrides]), stage_file=False)
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
    p.add_argument("--reference", default=None, help="reference cases for the case-based ranker "
                   "(default: external.reference_cases; cases of the query's own publication are never used)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. paths.knowledge=DIR")
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
