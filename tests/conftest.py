"""Shared fixtures: the knowledge tables built once per session, and a tiny project run end to end."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import joblib
import pytest
from helpers import REPO, SHARED_CASES, require, tiny_config
from omegaconf import OmegaConf

from dxlab.config import compose


@pytest.fixture(scope="session")
def knowledge_dir(tmp_path_factory) -> Path:
    """The knowledge stage's tables as the default config builds them (the merged HPO releases)."""
    from dxlab.stages import knowledge

    out = tmp_path_factory.mktemp("knowledge")
    cfg = compose(["tracking.enabled=false"], config_dir=REPO / "conf")
    cfg.paths.knowledge = str(out)
    cfg.paths.reports = str(tmp_path_factory.mktemp("knowledge_reports"))
    for source in cfg.knowledge.sources:  # release folders named relative to the project
        if source.get("path") and not Path(source.path).is_absolute():
            source.path = str(REPO / source.path)
    knowledge.run(cfg)
    return out


@pytest.fixture(scope="session")
def knowledge(knowledge_dir):
    from dxlab.knowledge.base import Knowledge

    return Knowledge.load(knowledge_dir)


TINY_PUBLICATIONS = 60  # publications of the shared case reports in the tiny project (about 200 cases)


def sample_cases(path: Path, n_publications: int = TINY_PUBLICATIONS, seed: int = 0) -> Path:
    """A sample of the shared case reports, whole publications, written to `path` (a temp folder, never the repo)."""
    rows = [json.loads(line) for line in require(SHARED_CASES, "the shared case reports").open()]
    pubs = sorted({r["pmid"] for r in rows})
    random.Random(seed).shuffle(pubs)
    keep = set(pubs[:n_publications])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["pmid"] in keep))
    return path


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, knowledge_dir):
    """Every stage of the graph up to evaluate, in order, on a cohort of a dozen diseases and a sample of the
    shared case reports. Returns (root, cfg, metrics)."""
    from dxlab.stages import evaluate, features, ingest, preprocess, simulate, train, validate

    root = tmp_path_factory.mktemp("tiny_project")
    sample_cases(root / "cases.jsonl")
    cfg = tiny_config(root)
    shutil.copytree(knowledge_dir, cfg.paths.knowledge)
    old = os.environ.get("DXLAB_PSEUDONYM_KEY")
    os.environ["DXLAB_PSEUDONYM_KEY"] = "test-key"
    metrics = {}
    try:
        for stage in (simulate, ingest, validate, preprocess, features, train, evaluate):
            metrics[stage.__name__.rsplit(".", 1)[-1]] = stage.run(cfg)
    finally:
        if old is None:
            os.environ.pop("DXLAB_PSEUDONYM_KEY", None)
        else:
            os.environ["DXLAB_PSEUDONYM_KEY"] = old
    return root, cfg, metrics


def _copy_cfg(cfg, root: Path, old_root: Path):
    data = OmegaConf.to_container(cfg, resolve=False)
    text = json.dumps(data).replace(str(old_root), str(root))
    return OmegaConf.create(json.loads(text))


@pytest.fixture(scope="session")
def prod_project(tiny_project, tmp_path_factory):
    """(root, cfg): the tiny project copied, a fitted anomaly detector, a registry with champion = diagnostic v1."""
    import mlflow
    from hydra.utils import instantiate
    from sklearn.pipeline import Pipeline

    from dxlab.data.schema import read_parquet
    from dxlab.tracking.mlflow_tracking import package_requirements
    from dxlab.tracking.pyfunc import log_pyfunc
    from dxlab.tracking.registry import GateDecision, register

    old_root, old_cfg, _ = tiny_project
    root = tmp_path_factory.mktemp("prod_project")
    for name in ("data", "models", "reports"):
        shutil.copytree(old_root / name, root / name)
    shutil.copy(old_root / "cases.jsonl", root / "cases.jsonl")
    cfg = _copy_cfg(old_cfg, root, old_root)
    cfg.tracking.uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg.tracking.experiment = "production-tests"
    cfg.serve.api.reload_interval_s = 0
    cfg.serve.batch.output = str(root / "data" / "predictions")
    cfg.serve.batch.progress = False
    # the anomaly stage's artifact, fitted the same way (features + the recommended detector) but faster
    train = read_parquet(root / "data" / "processed" / "train.parquet")
    features = instantiate(cfg.anomaly.features).fit(train)
    detector = instantiate(cfg.anomaly.auto).fit(features.transform(train))
    Path(cfg.serve.anomaly_detector).parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Pipeline([("features", features), ("detector", detector)]), cfg.serve.anomaly_detector)
    # the registry: champion = the tiny project's diagnostic model, as the approve stage leaves it
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(cfg.tracking.uri)
    # artifacts inside the temp project (the default, ./mlruns, would land in the checkout)
    mlflow.create_experiment(cfg.tracking.experiment, artifact_location=(root / "mlruns").as_uri())
    mlflow.set_experiment(cfg.tracking.experiment)
    name = cfg.model.name
    with mlflow.start_run(run_name="prod-fixture"):
        info = log_pyfunc(root / "models" / f"{name}.joblib", name, package_requirements())
    metrics = json.loads((root / "reports" / "metrics.json").read_text())[name]
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    register(client, info.model_uri, "dxlab", {line: {"overall": m["overall"]} for line, m in metrics.items()},
             GateDecision(True), "champion", {"dxlab.model": name})
    (root / "models" / f"{name}.mlflow.json").write_text(json.dumps({"model_uri": info.model_uri}))
    restore_tracking(saved)  # the process as it was: tests that use this registry pin it themselves
    return root, cfg


def restore_tracking(saved: str | None) -> None:
    """Undo `mlflow.set_tracking_uri` (process-wide, and exported as MLFLOW_TRACKING_URI, which wins over any
    config): no override, and the variable as it was before."""
    import sys

    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(autouse=True)
def _tracking_left_as_found():
    """Every stage run sets MLflow's tracking URI for the whole process: after each test, put it back, so the next
    test (or a module's fixture) reads its own config's store, never the previous test's."""
    yield
    restore_tracking(_TRACKING_AT_START)


_TRACKING_AT_START = os.environ.get("MLFLOW_TRACKING_URI")  # before any test or fixture ran


def pytest_collection_modifyitems(config, items):
    """The container tests last: they wait for the image's dependency layers that `make test` builds beside pytest
    (deploy/build_image.sh --deps-only), and by then that build has had the whole run to finish."""
    last = [item for item in items if item.nodeid.startswith("tests/production/test_container.py")]
    if last:
        items[:] = [item for item in items if item not in last] + last
