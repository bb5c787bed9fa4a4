"""Reproducible from any clone: two clones hold two pseudonymisation keys (each made by its own first ingest), so
nothing after ingest may depend on the key's value -- not the split, not the folds, not the order of rows. The tiny
pipeline run under two keys writes the same metrics, stage by stage."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from helpers import tiny_config

from dxlab.data.schema import read_parquet

pytestmark = pytest.mark.integration

KEYS = ("first-clone-key", "second-clone-key")
# wall-clock figures differ from run to run whatever the key
MEASURED = ("seconds", "elapsed", "duration", "per_second", "latency", "peak", "_mb")  # time and memory of a run


def _without_measures(value):
    if isinstance(value, dict):
        return {k: _without_measures(v) for k, v in value.items() if not any(m in k for m in MEASURED)}
    if isinstance(value, list):
        return [_without_measures(v) for v in value]
    return value


@pytest.fixture(scope="module")
def two_clones(tmp_path_factory, knowledge_dir):
    """The same raw files ingested and taken to the evaluation under each key (the cohort simulated once)."""
    from dxlab.stages import evaluate, features, ingest, preprocess, simulate, train, validate

    raw = None
    roots = []
    saved = pytest.MonkeyPatch()
    try:
        for key in KEYS:
            root = tmp_path_factory.mktemp(key)
            # the simulated cohort alone (no root/cases.jsonl) and no baseline keep it short; the diagnostic model
            # is the one whose folds, neighbours and reranker use the rows' groups
            cfg = tiny_config(root, ["~model@baseline"])
            shutil.copytree(knowledge_dir, cfg.paths.knowledge)
            saved.setenv("DXLAB_PSEUDONYM_KEY", key)
            if raw is None:
                simulate.run(cfg)
                raw = root / "data" / "raw"
            else:
                shutil.copytree(raw, root / "data" / "raw")
                (root / "reports" / "stages").mkdir(parents=True)
                shutil.copy(raw.parent.parent / "reports" / "stages" / "simulate.json", root / "reports" / "stages")
            for stage in (ingest, validate, preprocess, features, train, evaluate):
                stage.run(cfg)
            roots.append(root)
    finally:
        saved.undo()
    return roots


def test_the_pseudonyms_differ_but_the_rows_and_splits_do_not(two_clones):
    a, b = two_clones
    keys = ["source", "source_file", "source_row"]
    for part in ("interim/patients.parquet", "processed/train.parquet", "processed/test.parquet"):
        x, y = read_parquet(a / "data" / part), read_parquet(b / "data" / part)
        assert not set(x["patient_id"]) & set(y["patient_id"]), "two keys, two sets of pseudonyms"
        pd.testing.assert_frame_equal(x[keys], y[keys], obj=part)  # same rows, same order


def test_every_metrics_file_is_identical_under_two_keys(two_clones):
    a, b = two_clones
    files = sorted(p.relative_to(a) for p in (a / "reports").rglob("*.json"))
    assert any(p.name == "metrics.json" for p in files) and any(p.parent.name == "stages" for p in files)
    for path in files:  # each clone's own folder named alike
        x = _without_measures(json.loads((a / path).read_text().replace(str(a), "<clone>")))
        y = _without_measures(json.loads((b / path).read_text().replace(str(b), "<clone>")))
        assert x == y, f"{path} depends on the pseudonymisation key"
