"""The anomaly notebook runs top to bottom on a tiny generated ADBench-style file (DXLAB_ADBENCH_DIR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from notebook_run import ensure_python3_kernel, text_outputs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOK = NOTEBOOK_DIR / "05_anomaly_detection.ipynb"


@pytest.mark.integration
def test_anomaly_notebook_runs_on_a_tiny_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(150, 5)), rng.normal(loc=5.0, size=(12, 5))])
    y = np.r_[np.zeros(150, dtype=int), np.ones(12, dtype=int)]
    np.savez(tmp_path / "1_tiny.npz", X=X, y=y)
    monkeypatch.setenv("DXLAB_ADBENCH_DIR", str(tmp_path))
    monkeypatch.delenv("DXLAB_ADBENCH_DATASET", raising=False)
    ensure_python3_kernel()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    first = text_outputs(code[0])
    assert str(tmp_path.resolve()) in first and "dataset 1_tiny: 162 rows x 5 features, 12 anomalies" in first
    detectors = next(c for c in code if "detectors" in c.metadata.get("tags", []))
    assert "auto" in text_outputs(detectors) and "iforest" in text_outputs(detectors)
    images = [o for c in code for o in c.get("outputs", [])
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 2, "expected the PCA and t-SNE figures"
