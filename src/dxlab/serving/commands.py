"""The production subcommands of `dxlab`: predict, serve, monitor, retrain (registered by dxlab.cli)."""

from __future__ import annotations

import argparse
import json
import logging


def _cfg(args: argparse.Namespace):
    from dxlab.config import load_params

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return load_params(args.overrides)


def cmd_predict(args: argparse.Namespace) -> int:
    """Score every patient file of a folder (ingest's formats) with the champion model."""
    from dxlab.serving.batch import predict_from_config

    summary = predict_from_config(
        _cfg(args), args.input, args.output, model=args.model, newest_days=args.newest_days,
        engine=args.engine, scheduler=args.scheduler, n_jobs=args.n_jobs, n_workers=args.workers,
        overwrite=True if args.overwrite else None, write_csv=True if args.csv else None,
        progress=False if args.no_progress else None, chunk_size=args.chunk_size)
    short = {k: v for k, v in summary.items() if k != "files"}
    print(json.dumps(short, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the prediction API and the clinician page (FastAPI + uvicorn): /, /v1/predict, /v1/terms, /healthz,
    /readyz, /metrics, /docs. Refuses to start without an API key (serve.api.api_key_env) unless told
    --insecure-no-api-key."""
    import sys

    from dxlab.serving.api import MissingApiKey, serve

    try:
        serve(_cfg(args), args.host, args.port, args.model, require_key=False if args.insecure_no_api_key else None)
    except MissingApiKey as err:
        print(f"dxlab serve: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """Drift of a batch of patient files against the training reference: report.{json,html}, metrics.prom."""
    from dxlab.monitor.batch import monitor_from_config

    report = monitor_from_config(_cfg(args), args.input, args.predictions, args.out, args.newest_days, args.model,
                                 rebuild_reference=args.rebuild_reference)
    s = report["summary"]
    print(json.dumps({"batch": report["batch"], "n_patients": report["n_patients"], **s}, indent=2))
    return 3 if args.fail_on_drift and (s["drift"] or s["performance_degraded"]) else 0


def cmd_retrain(args: argparse.Namespace) -> int:
    """New files -> drift check -> pipeline -> approval gate; the champion moves only when the new model passes."""
    from dxlab.retrain import retrain, run_step

    if args.step:
        result, code = run_step(_cfg(args), args.step, args.stages, force=args.force, runner=args.runner)
        print(json.dumps(result, indent=2, default=str))
        return code
    result = retrain(_cfg(args), force=args.force, runner=args.runner, dry_run=args.dry_run)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    """Export the champion (serve.model) with its knowledge tables, anomaly detector and drift reference into one
    folder (`dxlab.serving.bundle`): what `make image` bakes into the container."""
    from dxlab.serving.bundle import export_bundle

    info = export_bundle(_cfg(args), args.out, model=args.model)
    print(json.dumps({k: v for k, v in info.items() if k != "files"}, indent=2))
    return 0


def add_commands(sub) -> None:
    overrides = {"nargs": "*", "help": "dotted overrides of params.yaml, e.g. serve.top_k=10"}
    p = sub.add_parser("predict", help=cmd_predict.__doc__, description=cmd_predict.__doc__)
    p.add_argument("--input", default=None, help="folder or file of patients (default serve.batch.input)")
    p.add_argument("--output", default=None, help="output folder (default serve.batch.output)")
    p.add_argument("--model", default=None, help="models:/NAME@ALIAS, models:/NAME/VERSION, a .joblib or a "
                   "model name (default serve.model, the champion)")
    p.add_argument("--newest-days", type=int, default=None, help="only the files of the newest N days")
    p.add_argument("--engine", choices=["local", "dask"], default=None)
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=int, default=None, help="dask local cluster workers")
    p.add_argument("--n-jobs", type=int, default=None, help="local engine: processes over files")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="rescore files already scored")
    p.add_argument("--csv", action="store_true", help="also write CSV next to the parquet files")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", **overrides)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bundle", help=cmd_bundle.__doc__, description=cmd_bundle.__doc__)
    p.add_argument("--out", required=True, help="the bundle folder (replaced)")
    p.add_argument("--model", default=None, help="a registry URI (default serve.model, the champion)")
    p.add_argument("overrides", **overrides)
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("serve", help=cmd_serve.__doc__, description=cmd_serve.__doc__)
    p.add_argument("--host", default=None, help="default serve.api.host (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default serve.api.port (8000)")
    p.add_argument("--model", default=None, help="serve this model instead of the champion: a registry URI, a "
                   ".joblib path or a model name under paths.models (the only way a local file is served)")
    p.add_argument("--insecure-no-api-key", action="store_true",
                   help="serve without an API key (anyone who reaches the port may call; logged, and said in an "
                   "X-DXLab-Warning header on every response); same as serve.api.require_key=false")
    p.add_argument("overrides", **overrides)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("monitor", help=cmd_monitor.__doc__, description=cmd_monitor.__doc__)
    p.add_argument("--input", default=None, help="folder or file of patients (default monitor.input)")
    p.add_argument("--predictions", default=None, help="`dxlab predict` output to reuse (default "
                   "monitor.predictions; files without predictions are scored)")
    p.add_argument("--out", default=None, help="report folder (default monitor.out)")
    p.add_argument("--newest-days", type=int, default=None, help="only the files of the newest N days")
    p.add_argument("--model", default=None)
    p.add_argument("--rebuild-reference", action="store_true")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 3 on drift or degraded performance")
    p.add_argument("overrides", **overrides)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("retrain", help=cmd_retrain.__doc__, description=cmd_retrain.__doc__)
    p.add_argument("--force", action="store_true", help="retrain even without new files or drift")
    p.add_argument("--runner", choices=["stages", "dvc"], default=None,
                   help="stages: in process; dvc: `dvc repro approve` (default retrain.runner)")
    p.add_argument("--dry-run", action="store_true", help="check and decide, train nothing")
    p.add_argument("--step", choices=["find", "drift", "decide", "pipeline", "finish"], default=None,
                   help="run one step (the Airflow DAG's tasks); `decide` exits 99 when there is nothing to do")
    p.add_argument("--stages", nargs="+", default=None, help="--step pipeline: these stages only")
    p.add_argument("overrides", **overrides)
    p.set_defaults(func=cmd_retrain)

