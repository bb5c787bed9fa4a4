"""The exploration notebook runs top to bottom on the tiny project and shows what it promises."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from notebook_run import ensure_python3_kernel, text_outputs  # noqa: E402

from dxlab.data.schema import read_parquet  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
EXPLORATION = NOTEBOOK_DIR / "01_data_exploration.ipynb"
REPO_CONF = REPO / "conf"


@pytest.mark.integration
def test_exploration_notebook_runs_on_tiny_project(tiny_project, monkeypatch):
    root, cfg, _ = tiny_project
    monkeypatch.setenv("DXLAB_PROJECT_DIR", str(root))
    ensure_python3_kernel()

    patients = read_parquet(Path(cfg.paths.interim) / "patients.parquet")
    n_diseases = patients["diagnosis"].dropna().nunique()
    assert n_diseases > 0

    nb = nbformat.read(EXPLORATION, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    # It read the tiny project, not the repository's data folder.
    assert str(root.resolve()) in text_outputs(code_cells[0])

    images = [
        o
        for c in code_cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
    ]
    assert images, "no figure was displayed"

    class_cells = [c for c in code_cells if "class-distribution" in c.metadata.get("tags", [])]
    assert len(class_cells) == 1
    text = text_outputs(class_cells[0])
    assert f"{n_diseases} diseases" in text, text


def _run(notebook: Path):
    nb = nbformat.read(notebook, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    images = [o for c in code_cells for o in c.get("outputs", [])
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert images, "no figure was displayed"
    return code_cells, "\n".join(text_outputs(c) for c in code_cells)


@pytest.mark.integration
def test_preprocessing_notebook_describes_the_tiny_split_and_features(tiny_project, monkeypatch):
    root, cfg, _ = tiny_project
    monkeypatch.setenv("DXLAB_PROJECT_DIR", str(root))
    ensure_python3_kernel()
    code_cells, text = _run(NOTEBOOK_DIR / "02_preprocessing.ipynb")
    assert str(root.resolve()) in text_outputs(code_cells[0])
    train = read_parquet(Path(cfg.paths.processed) / "train.parquet")
    test = read_parquet(Path(cfg.paths.processed) / "test.parquet")
    n_diseases = len(set(train["diagnosis"]) | set(test["diagnosis"]))
    assert f"split-table: {n_diseases} diseases" in text, text
    import scipy.sparse

    x = scipy.sparse.load_npz(Path(cfg.paths.features) / "train.npz")
    assert f"feature-matrix: {x.shape[0]:,} x {x.shape[1]:,}" in text, text


@pytest.mark.integration
def test_baselines_notebook_scores_every_trained_model(tiny_project, monkeypatch):
    import joblib
    import numpy as np

    root, cfg, _ = tiny_project
    monkeypatch.setenv("DXLAB_PROJECT_DIR", str(root))
    ensure_python3_kernel()
    _, text = _run(NOTEBOOK_DIR / "03_model_baselines.ipynb")
    names = sorted(p.stem for p in Path(cfg.paths.models).glob("*.joblib"))
    assert f"models: {', '.join(names)};" in text, text
    test = read_parquet(Path(cfg.paths.processed) / "test.parquet")
    learned = cfg.model.name
    model = joblib.load(Path(cfg.paths.models) / f"{learned}.joblib")
    predicted = np.asarray(model.classes_)[model.predict_proba(test).argmax(axis=1)]
    errors = int((predicted != test["diagnosis"].to_numpy()).sum())
    assert f"{learned}: {errors} errors on {len(test)} patients" in text, text


@pytest.mark.integration
def test_advanced_notebook_fits_variants_and_ranks_an_unseen_disease(tiny_project, monkeypatch):
    root, cfg, _ = tiny_project
    monkeypatch.setenv("DXLAB_PROJECT_DIR", str(root))
    monkeypatch.setenv("DXLAB_CONF_DIR", str(REPO_CONF))
    ensure_python3_kernel()
    _, text = _run(NOTEBOOK_DIR / "04_model_advanced.ipynb")
    assert "variants-fitted: 5" in text, text
    import re

    unseen = re.search(r"unseen disease (\S+) .*: rank (\d+) of (\d+)", text)
    assert unseen, text
    train = read_parquet(Path(cfg.paths.processed) / "train.parquet")
    assert unseen.group(1) not in set(train["diagnosis"])
    assert int(unseen.group(3)) > 12000  # ranked among every disease of the universe
    assert int(unseen.group(2)) <= 3, "a textbook presentation should put the unseen disease near the top"
    added = re.search(r"smote-added: (\d+) synthetic rows for (\d+) diseases", text)
    assert added and int(added.group(1)) > 0
