"""The anomaly notebook runs top to bottom on a tiny generated ADBench-style file (DXLAB_ADBENCH_DIR)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOK = NOTEBOOK_DIR / "05_anomaly_detection.ipynb"


def _ensure_python3_kernel() -> None:
    """Install the venv's ipykernel as the `python3` kernelspec (into sys.prefix) only when none is found."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel import kernelspec

        kernelspec.install(user=False, prefix=sys.prefix)


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("display_data", "execute_result"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.integration
def test_anomaly_notebook_runs_on_a_tiny_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(150, 5)), rng.normal(loc=5.0, size=(12, 5))])
    y = np.r_[np.zeros(150, dtype=int), np.ones(12, dtype=int)]
    np.savez(tmp_path / "1_tiny.npz", X=X, y=y)
    monkeypatch.setenv("DXLAB_ADBENCH_DIR", str(tmp_path))
    monkeypatch.delenv("DXLAB_ADBENCH_DATASET", raising=False)
    _ensure_python3_kernel()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    first = _text(code[0])
    assert str(tmp_path.resolve()) in first and "dataset 1_tiny: 162 rows x 5 features, 12 anomalies" in first
    detectors = next(c for c in code if "detectors" in c.metadata.get("tags", []))
    assert "auto" in _text(detectors) and "iforest" in _text(detectors)
    images = [o for c in code for o in c.get("outputs", [])
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 2, "expected the PCA and t-SNE figures"
