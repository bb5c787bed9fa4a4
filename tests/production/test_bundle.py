"""`dxlab bundle`: the champion exported with what serving it needs; a bundle is served like the registry model
it came from (same version, same answers), and only a registered model can be bundled."""

import hashlib

import numpy as np
import pytest

from dxlab.data.schema import read_parquet
from dxlab.serving.bundle import export_bundle, read_bundle
from dxlab.serving.scorer import Scorer, model_version, resolve_model


@pytest.fixture(scope="module")
def bundle(prod_project, tmp_path_factory):
    _, cfg = prod_project
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    return out, export_bundle(cfg, out)


def test_bundle_carries_the_champion_and_its_knowledge(bundle):
    folder, info = bundle
    assert info == read_bundle(folder)
    assert info["version"] == "1" and info["alias"] == "champion" and info["model"] == "diagnostic"
    assert info["knowledge_version"].startswith("HPO")
    for name in ("model.joblib", "knowledge/terms.parquet", "knowledge/diseases.parquet", "detector.joblib"):
        assert (folder / name).exists(), name
    for name, digest in info["files"].items():  # every file as recorded
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_a_bundle_is_served_like_the_registry_model(prod_project, bundle):
    root, cfg = prod_project
    folder, _ = bundle
    handle = resolve_model(str(folder))
    assert handle.version == "1" and model_version(str(folder)) == "1" and handle.name == "diagnostic"
    patients = read_parquet(root / "data" / "processed" / "test.parquet").head(5)
    from_registry = Scorer.from_config(cfg).top(patients)
    bundled = cfg.copy()
    bundled.serve.model = str(folder)
    bundled.serve.knowledge_dir = str(folder / "knowledge")
    from_bundle = Scorer.from_config(bundled).top(patients)
    np.testing.assert_array_equal(from_bundle[0], from_registry[0])
    np.testing.assert_allclose(from_bundle[1], from_registry[1])


def test_only_a_registered_model_is_bundled(prod_project, tmp_path):
    _, cfg = prod_project
    with pytest.raises(ValueError, match="registered model"):
        export_bundle(cfg, tmp_path / "b", model="models/diagnostic.joblib")
    assert not (tmp_path / "b").exists()
