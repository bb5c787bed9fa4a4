"""Shared fixtures: the knowledge tables built once per session, and a tiny project run end to end."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from helpers import REPO, SHARED_CASES, require

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


TINY_OVERRIDES = ["debug=tiny"]
TINY_PUBLICATIONS = 60  # publications of the shared case reports in the tiny project (about 200 cases)


def sample_cases(path: Path, n_publications: int = TINY_PUBLICATIONS, seed: int = 0) -> Path:
    """A sample of the shared case reports, whole publications, written to `path` (a temp folder, never the repo)."""
    rows = [json.loads(line) for line in require(SHARED_CASES, "the shared case reports").open()]
    pubs = sorted({r["pmid"] for r in rows})
    random.Random(seed).shuffle(pubs)
    keep = set(pubs[:n_publications])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["pmid"] in keep))
    return path


def tiny_config(root: Path, overrides=()):
    """The composed default with the debug overlay, all paths inside `root`, tracking to a local SQLite file; the
    real case reports are a sample of the shared ones (root/cases.jsonl, written by the tiny project)."""
    cfg = compose([*TINY_OVERRIDES, *overrides], config_dir=REPO / "conf")
    for key in list(cfg.paths):
        cfg.paths[key] = str(root / cfg.paths[key])
    cfg.data.sources.hpo_cohort.source.path = str(root / "data" / "raw" / "hpo_cohort")
    if "case_reports" in cfg.data.sources:
        cfg.data.sources.case_reports.source.path = str(root / "cases.jsonl")
    cfg.tracking.uri = f"sqlite:///{root / 'mlflow.db'}"
    return cfg


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
