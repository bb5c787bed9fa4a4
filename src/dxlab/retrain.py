"""Automated retraining: new files -> drift check -> decision -> pipeline -> approval gate -> report.

`dxlab retrain` runs the whole flow in one process; the Airflow DAG (dags/dxlab_retrain.py) runs the same steps
as tasks. The champion alias moves only through the approve stage's gates (`dxlab.tracking.registry`): a model
that fails them is registered as the challenger and the champion stays where it was.

What "new" means: files of the configured source whose name (or content digest) is not in the state file
(monitor.retrain.state), which records the files the current model was trained on. Without a state file, the
files the last ingest read (data/interim/ingested.parquet) count as already trained on.
"""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


# -- steps (each takes and returns plain JSON-able values, so Airflow can pass them through XCom) -----------------
def find_new_files(cfg: DictConfig) -> dict:
    """{'files': [...all], 'new': [...]}: source files not recorded in the state (by name and digest)."""
    from dxlab.data.sources import feed_source
    from dxlab.serving.batch import file_digest

    source = feed_source(cfg)
    files = [Path(p) for p in source.files()]
    trained = trained_files(cfg)
    new = [str(p) for p in files if p.name not in trained or (trained[p.name] and trained[p.name] != file_digest(p))]
    return {"files": [str(p) for p in files], "new": new, "n_new": len(new)}


def trained_files(cfg: DictConfig) -> dict[str, str]:
    """File name -> digest ('' when only the name is known) of the files the current model was trained on."""
    state = Path(cfg.monitor.retrain.state)
    if state.exists():
        return dict(json.loads(state.read_text()).get("files", {}))
    ingested = Path(cfg.paths.interim) / "ingested.parquet"
    if ingested.exists():
        import pandas as pd

        return {name: "" for name in pd.read_parquet(ingested, columns=["source_file"])["source_file"].unique()}
    return {}


def check_drift(cfg: DictConfig, new_files: Sequence[str]) -> dict | None:
    """The monitor's summary for the new files against the current reference (None: nothing to compare)."""
    if not new_files or not cfg.monitor.retrain.on_drift:
        return None
    from dxlab.monitor.batch import monitor_from_config

    try:
        report = monitor_from_config(cfg, input_path=Path(new_files[0]).parent, files=[Path(f) for f in new_files],
                                     out=Path(cfg.paths.reports) / "retrain" / "drift")
    except (FileNotFoundError, RuntimeError) as err:  # no model or no reference yet: nothing to compare with
        log.warning("drift check skipped: %s", err)
        return {"skipped": str(err)[:300]}
    return {"batch": report["batch"], "n_patients": report["n_patients"], **report["summary"]}


def decide(cfg: DictConfig, new: dict, drift: dict | None, force: bool = False) -> dict:
    r = cfg.monitor.retrain
    reasons = []
    if force:
        reasons.append("forced")
    if new["n_new"] >= int(r.min_new_files):
        reasons.append(f"{new['n_new']} new file(s) (threshold {r.min_new_files})")
    if drift and drift.get("drift"):
        reasons.append("drift in " + ", ".join(drift["drifted_inputs"] + drift["drifted_predictions"]))
    if drift and drift.get("performance_degraded"):
        reasons.append("performance degraded")
    return {"retrain": bool(reasons), "reasons": reasons}


def run_pipeline(cfg: DictConfig, runner: str = "stages", stages: Sequence[str] | None = None) -> dict:
    """The training pipeline up to and including the approval gate; returns per-stage metrics."""
    if runner == "dvc":
        start = time.perf_counter()
        proc = subprocess.run(["dvc", "repro", "approve"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"dvc repro approve failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return {"dvc": {"seconds": round(time.perf_counter() - start, 1)}}
    if runner != "stages":
        raise ValueError(f"runner must be 'stages' or 'dvc', got {runner!r}")
    from dxlab.tracking.mlflow_tracking import log_metrics, stage_run

    metrics = {}
    for name in stages or list(cfg.monitor.retrain.stages):
        module = importlib.import_module(f"dxlab.stages.{name}")
        log.info("retrain: stage %s", name)
        with stage_run(name, cfg, tags={"dxlab.retrain": "true"}):
            metrics[name] = module.run(cfg)
            log_metrics(metrics[name] or {})
    return metrics


def champion_version(cfg: DictConfig) -> str | None:
    import mlflow

    from dxlab.tracking.mlflow_tracking import tracking_uri
    from dxlab.tracking.registry import CHAMPION

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(cfg))
    try:
        return str(client.get_model_version_by_alias(cfg.approval.registered_model, CHAMPION).version)
    except Exception:  # noqa: BLE001 - no registered model or no alias yet
        return None


def record_state(cfg: DictConfig, files: Sequence[str]) -> None:
    from dxlab.serving.batch import file_digest

    state = Path(cfg.monitor.retrain.state)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"files": {Path(f).name: file_digest(f) for f in files},
                                 "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")


def write_result(cfg: DictConfig, result: dict) -> dict:
    from dxlab.stages._runner import write_json

    write_json(result, cfg.monitor.retrain.report)
    return result


# -- the flow ---------------------------------------------------------------------------------------------------
def retrain(cfg: DictConfig, force: bool = False, runner: str | None = None, dry_run: bool = False) -> dict:
    """The whole flow in one process (what `dxlab retrain` runs)."""
    runner = runner or cfg.monitor.retrain.runner
    new = find_new_files(cfg)
    drift = check_drift(cfg, new["new"])
    decision = decide(cfg, new, drift, force)
    before = champion_version(cfg)
    result = {"new_files": [Path(f).name for f in new["new"]], "drift": drift, **decision, "runner": runner,
              "champion_before": before, "champion_after": before, "promoted": False, "approval": None}
    if not decision["retrain"] or dry_run:
        log.info("retrain: %s", "dry run" if dry_run and decision["retrain"] else "nothing to do")
        return write_result(cfg, {**result, "dry_run": dry_run})
    result["stages"] = run_pipeline(cfg, runner)
    return finish(cfg, result, new["files"])


def finish(cfg: DictConfig, result: dict, files: Sequence[str]) -> dict:
    """After the pipeline: read the gate's verdict, record the files trained on, write the report."""
    approval = Path(cfg.paths.reports) / "approval.json"
    result["approval"] = json.loads(approval.read_text()) if approval.exists() else None
    after = champion_version(cfg)
    result.update(champion_after=after, promoted=after is not None and after != result["champion_before"])
    record_state(cfg, files)
    log.info("retrain: champion %s -> %s (%s)", result["champion_before"], after,
             "promoted" if result["promoted"] else "kept: " + "; ".join((result["approval"] or {}).get("reasons", [])))
    return write_result(cfg, result)


# -- one step per process (the Airflow DAG's tasks): results pass through a JSON file ---------------------------
STEPS = ("find", "drift", "decide", "pipeline", "finish")
SKIP_EXIT_CODE = 99  # `decide` exits with it when there is nothing to do: Airflow skips the tasks downstream


def run_step(cfg: DictConfig, step: str, stages: Sequence[str] | None = None, force: bool = False,
             runner: str | None = None) -> tuple[dict, int]:
    """Run one step of the flow; returns (its result, exit code)."""
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    path = Path(cfg.monitor.retrain.report).with_name("steps.json")
    state = json.loads(path.read_text()) if path.exists() and step != "find" else {}
    code = 0
    if step == "find":
        result = find_new_files(cfg)
    elif step == "drift":
        result = {"drift": check_drift(cfg, _needs(state, "find")["new"])}
    elif step == "decide":
        new = _needs(state, "find")
        result = {**decide(cfg, new, _needs(state, "drift")["drift"], force), "champion_before": champion_version(cfg)}
        code = 0 if result["retrain"] else SKIP_EXIT_CODE
    elif step == "pipeline":
        if not _needs(state, "decide")["retrain"]:
            raise RuntimeError("the decide step found nothing to retrain")
        result = {"stages": {**state.get("pipeline", {}).get("stages", {}),
                             **run_pipeline(cfg, runner or cfg.monitor.retrain.runner, stages)}}
    else:
        new, decision = _needs(state, "find"), _needs(state, "decide")
        result = finish(cfg, {"new_files": [Path(f).name for f in new["new"]], "drift": state["drift"]["drift"],
                              "retrain": decision["retrain"], "reasons": decision["reasons"],
                              "champion_before": decision["champion_before"],
                              "stages": state.get("pipeline", {}).get("stages", {})}, new["files"])
    state[step] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2, default=str) + "\n")
    return result, code


def _needs(state: dict, step: str) -> dict:
    if step not in state:
        raise RuntimeError(f"run the `{step}` step first (dxlab retrain --step {step})")
    return state[step]
