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
    """Print what the last pipeline run trained on, its results, the approval, and how to open the MLflow UI."""
    from dxlab.tracking.mlflow_tracking import tracking_uri

    root = project_root()
    metrics = root / "reports" / "metrics.json"
    if not metrics.exists():
        print("no metrics yet: run `make repro`", file=sys.stderr)
        return 1
    stages = root / "reports" / "stages"
    ingest = json.loads((stages / "ingest.json").read_text()) if (stages / "ingest.json").exists() else {}
    train = json.loads((stages / "train.json").read_text()) if (stages / "train.json").exists() else {}
    read = [f"{name} ({m['n_rows']:,} rows)" for name, m in ingest.get("sources", {}).items() if m["status"] == "read"]
    missing = [f"{name} ({m['status']})" for name, m in ingest.get("sources", {}).items() if m["status"] != "read"]
    print(f"\nTrained on: {', '.join(read) or 'see reports/stages/train.json'}.")
    if missing:
        print(f"Not read: {'; '.join(missing)} -- the run trained without them; the figures on real cases are "
              "missing below. Put the shared case reports beside the project (../shared/data/phenopackets/"
              "cases.jsonl) or point data.sources.case_reports.source.path at yours.")
    for name, m in train.items():
        print(f"  {name}: {m.get('n_classes', 0):,} diseases, {m.get('fit_seconds', 0):.0f} s")
    print("\nResults (case_reports: each real case scored by what never saw its publication; hpo_cohort_test: "
          "the simulated test split):\n")
    print(_evaluation_table(json.loads(metrics.read_text())))
    approval = root / "reports" / "approval.json"
    if approval.exists():
        a = json.loads(approval.read_text())
        verdict = "approved" if a["passed"] else "refused: " + "; ".join(a["reasons"])
        print(f"\n{a['model']}: {verdict}; registered as {a['registered_model']} version {a['version']} "
              f"alias {a['alias']} (validated on {', '.join(a.get('validated_on', [])) or 'nothing'}).")
    report = root / "reports" / "evaluation" / "case_reports" / "report.md"
    if report.exists():
        print(f"The full report on real cases: {report.relative_to(root)}")
    print(f"Open the MLflow UI with `make ui` (store {tracking_uri()}), then http://127.0.0.1:5000")
    return 0


def generated_blocks(root: Path) -> dict[str, str]:
    """Every generated block the README and docs/ quote, from the files the pipeline and the benchmarks wrote."""
    blocks: dict[str, str] = {}
    metrics = root / "reports" / "metrics.json"
    if metrics.exists():
        blocks["results"] = _evaluation_table(json.loads(metrics.read_text()))
    examples = root / "reports" / "evaluation" / "examples.md"
    if examples.exists():
        blocks["marfan"] = examples.read_text().strip()
    cases = root / "reports" / "evaluation" / "case_reports" / "metrics.json"
    if cases.exists():
        real = json.loads(cases.read_text())
        blocks["side-by-side"] = _side_by_side(real)
        blocks["knowledge-breakdown"] = _slices(real.get("by_knowledge", {}), "what is known of the disease")
    anomaly_stage = root / "reports" / "stages" / "anomaly.json"
    if anomaly_stage.exists():
        stage = json.loads(anomaly_stage.read_text())
        blocks["anomaly"] = _anomaly_table(stage)
        blocks["anomaly-real"] = _anomaly_real(stage.get("real_cases") or {})
    ddxplus = root / "reports" / "ddxplus" / "summary.md"
    if ddxplus.exists():
        blocks["ddxplus"] = ddxplus.read_text().strip()
    sweep = root / "reports" / "sweep" / "summary.md"
    if sweep.exists():
        blocks["sweep"] = sweep.read_text().split("\n", 1)[1].strip()
    for name, path in (("bench", "bench/results.md"), ("external-bench", "bench/external.md"),
                       ("simulated-network", "bench/simulated_network.md")):
        if (root / path).exists():
            blocks[name] = (root / path).read_text().split("\n", 1)[1].strip()
    coverage = root / "reports" / "knowledge_coverage.md"
    if coverage.exists():
        blocks["knowledge-coverage"] = coverage.read_text().split("\n", 1)[1].strip().replace("\n## ", "\n#### ")
    production = root / "bench" / "production.md"
    if production.exists():
        blocks["production"] = production.read_text().split("\n", 1)[1].strip().replace("\n## ", "\n#### ")
    speed = _speed_targets(root)
    if speed:
        blocks["speed"] = speed
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
    return blocks


def cmd_readme(args: argparse.Namespace) -> int:
    """Copy the generated tables of the last run into README.md and docs/*.md, between their markers."""
    root = project_root()
    if not (root / "reports" / "metrics.json").exists():
        print("no metrics yet: run `make repro`", file=sys.stderr)
        return 1
    blocks = generated_blocks(root)
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    used = set()
    for path in files:
        text = original = path.read_text()
        for name, body in blocks.items():
            start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
            if start not in text or end not in text:
                continue
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{start}\n{body}\n{end}{tail}"
            used.add(name)
        if text != original:
            path.write_text(text)
            print(f"updated {path.relative_to(root)}")
    missing = sorted(set(blocks) - used)
    if missing:
        print(f"no markers for {', '.join(missing)} in README.md or docs/", file=sys.stderr)
        return 1
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


def _speed_targets(root: Path) -> str:
    """The speed and memory targets of the issue "One diagnostic model" against the last benchmark runs
    (bench/production.json, bench/external.json, bench/fresh_repro.json): what each measured, and whether it met."""
    rows = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    production = root / "bench" / "production.json"
    if production.exists():
        p = json.loads(production.read_text())
        coded = [b for b in p.get("batch", []) if not b.get("notes") and b.get("n_jobs") == 2]
        if coded:
            b = coded[-1]
            rows.append(("batch: 100,000 patients on 2 cores (coded findings, 2 processes)", "under 60 s",
                         f"{b['seconds']:.1f} s", verdict(b["seconds"] < 60 and b["n_rows"] >= 100_000)))
        for a in p.get("api", []):
            if a["server"].startswith("dxlab serve"):
                seq = a["sequential"]
                rows.append((f"API, one patient, one thread: {a['server'][len('dxlab serve '):].strip('()')}",
                             "p50 ≤ 15 ms, p99 ≤ 50 ms", f"p50 {seq['p50_ms']:.1f} ms, p99 {seq['p99_ms']:.1f} ms",
                             verdict(seq["p50_ms"] <= 15 and seq["p99_ms"] <= 50)))
            elif a["server"].startswith("mlflow"):
                seq = a["sequential"]
                rows.append(("beside it: `mlflow models serve`, same model", "(comparison)",
                             f"p50 {seq['p50_ms']:.1f} ms, p99 {seq['p99_ms']:.1f} ms", ""))
    external = root / "bench" / "external.json"
    if external.exists():
        e = json.loads(external.read_text())
        rows.append((f"`evaluate-external` on {e['cases']:,} unseen cases", "under 60 s, peak under 4 GB",
                     f"{e['seconds']:.0f} s, {e['peak_rss_gb']:.1f} GB",
                     verdict(e["seconds"] < 60 and e["peak_rss_gb"] < 4)))
    fresh = root / "bench" / "fresh_repro.json"
    if fresh.exists():
        f = json.loads(fresh.read_text())
        rows.append(("fresh clone `make repro`, installation included", f"under {f['target_seconds'] // 60} min",
                     f"{f['seconds'] / 60:.1f} min (exit {f['exit_code']})",
                     verdict(f["exit_code"] == 0 and f["seconds"] < f["target_seconds"])))
    if not rows:
        return ""
    lines = ["| what | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {what} | {target} | {measured} | {ok} |" for what, target, measured, ok in rows]
    return "\n".join(lines)


def _side_by_side(real: dict) -> str:
    overall = real["overall"]
    lines = ["| variant | top-1 | top-3 | top-10 | MRR |", "|---|---|---|---|---|",
             f"| **the diagnostic model** | {overall['top1']:.1%} | {overall['top3']:.1%} | {overall['top10']:.1%} | "
             f"{overall['mrr']:.3f} |"]
    for name, m in real.get("side_by_side", {}).items():
        lines.append(f"| {name} | {m['top1']:.1%} | {m['top3']:.1%} | {m['top10']:.1%} | {m['mrr']:.3f} |")
    return "\n".join(lines)


def _slices(rows: dict, label: str) -> str:
    lines = [f"| {label} | cases | top-1 | top-10 | ECE |", "|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['n']:,} | {m['top1']:.1%} | {m['top10']:.1%} | {m['ece']:.3f} |")
    return "\n".join(lines)


def _anomaly_real(real: dict) -> str:
    if not real:
        return "(no real cases in the last run)"
    lines = ["| source | cases | flagged by auto (fitted without their fold) | configured rate | "
             "flagged by a detector fitted on simulated patients alone |", "|---|---|---|---|---|"]
    for name, r in real.items():
        sim = r.get("flag_rate_of_a_detector_fitted_on_simulated_patients_alone")
        lines.append(f"| {name} | {r['n_cases']:,} | {r['flag_rate']:.1%} | {r['configured_rate']:.1%} | "
                     f"{'' if sim is None else f'{sim:.1%}'} |")
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
