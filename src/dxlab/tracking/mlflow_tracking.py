"""MLflow tracking: one run per stage, tagged with the git commit; SQLite store in the project by default."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

from omegaconf import DictConfig

from dxlab.config import flatten, project_root

log = logging.getLogger(__name__)
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")  # what MLflow accepts in a metric or param name


def tracking_uri(cfg: DictConfig | None = None) -> str:
    """MLFLOW_TRACKING_URI wins; else the configured URI; else sqlite:///<project>/mlflow.db."""
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    configured = cfg.tracking.get("uri") if cfg is not None and "tracking" in cfg else None
    if configured:
        return str(configured)
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=project_root()).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def git_dirty() -> bool:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, check=True, cwd=project_root()).stdout
        return bool(out.strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


def _enabled(cfg: DictConfig | None) -> bool:
    return cfg is None or "tracking" not in cfg or bool(cfg.tracking.get("enabled", True))


@contextlib.contextmanager
def stage_run(stage: str, cfg: DictConfig | None, nested: bool = False, run_name: str | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[object]:
    """An MLflow run named after the stage, with params and git tags; yields None when tracking is off."""
    if not _enabled(cfg):
        yield None
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    experiment = cfg.tracking.get("experiment", "dxlab") if cfg is not None and "tracking" in cfg else "dxlab"
    mlflow.set_experiment(experiment)
    all_tags = {"dxlab.stage": stage, "mlflow.source.git.commit": git_commit(), "git_dirty": str(git_dirty())}
    all_tags.update(tags or {})
    with mlflow.start_run(run_name=run_name or stage, nested=nested, tags=all_tags) as run:
        if cfg is not None:
            log_params(cfg)
        yield run


def log_params(cfg) -> None:
    import mlflow

    params = {_METRIC_NAME.sub("_", k): ("" if v is None else str(v))[:6000] for k, v in flatten(cfg).items()}
    items = list(params.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start:start + 100]))


def log_metrics(metrics: Mapping, prefix: str = "") -> None:
    """Log nested metrics flattened with '/' (e.g. 'logreg/rare/top3'); None values are skipped."""
    if not _active():
        return
    import mlflow

    flat = {_METRIC_NAME.sub("_", k): float(v) for k, v in flatten(dict(metrics), prefix=prefix, sep="/").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    if flat:
        mlflow.log_metrics(flat)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    if _active() and Path(path).exists():
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)


def log_dict(data: Mapping, name: str) -> None:
    if _active():
        import mlflow

        mlflow.log_text(json.dumps(data, indent=2, default=str), name)


def _active() -> bool:
    try:
        import mlflow

        return mlflow.active_run() is not None
    except ImportError:  # pragma: no cover
        return False


def package_requirements(packages=("scikit-learn", "pandas", "numpy", "scipy", "pyarrow", "joblib")) -> list[str]:
    """Explicit pip requirements for logged models: exact versions of what the pickles need."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in packages] + [f"mlflow=={version('mlflow')}"]


def table_digest(table) -> str:
    """A content digest of a canonical table (its pseudonymised rows), stable across runs and machines."""
    import hashlib

    import pandas as pd

    flat = table.copy()
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, (list, dict))).any():
            flat[col] = flat[col].map(lambda v: json.dumps(v, sort_keys=True, default=str))
    hashed = pd.util.hash_pandas_object(flat.astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:20]


def log_training_sources(table, cfg=None) -> dict[str, str]:
    """Log each source of the training rows as an MLflow dataset (name, where it came from, rows, digest) in the
    active run, so the UI shows which data trained which model. Only the schema and row counts are logged, never a
    row. Returns source -> digest."""
    if not _active() or "source" not in table:
        return {}
    import mlflow
    import pandas as pd

    paths = {}
    if cfg is not None and "data" in cfg and "sources" in cfg.data:
        paths = {name: str(entry.source.get("path", "")) for name, entry in cfg.data.sources.items()}
    out = {}
    for name, rows in table.groupby("source", sort=False):
        digest = table_digest(rows)
        profile = pd.DataFrame({"diagnosis": rows["diagnosis"].astype(str).to_numpy(),
                                "group_id": rows["group_id"].astype(str).to_numpy() if "group_id" in rows else ""})
        with warnings.catch_warnings():  # a local path reads as two kinds of source: MLflow says so, harmlessly
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(profile, source=paths.get(name) or str(name), name=str(name),
                                              digest=digest)
        mlflow.log_input(dataset, context="training", tags={"rows": str(len(rows)),
                                                            "diseases": str(rows["diagnosis"].nunique())})
        out[str(name)] = digest
    return out
