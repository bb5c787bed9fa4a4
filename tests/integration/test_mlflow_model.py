"""A trained model logged as an MLflow pyfunc loads back and predicts, with signature and explicit requirements."""

import mlflow
import pytest

from dxlab.tracking.mlflow_tracking import package_requirements
from dxlab.tracking.pyfunc import INPUT_EXAMPLE, log_pyfunc

pytestmark = pytest.mark.integration


def test_logged_model_loads_and_predicts(tiny_project, tmp_path):
    root, cfg, _ = tiny_project
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("pyfunc-check")
    with mlflow.start_run():
        info = log_pyfunc(root / "models" / f"{cfg.model.name}.joblib", cfg.model.name, package_requirements())
    assert info.signature is not None and "findings" in info.signature.inputs.input_names()
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    proba = loaded.predict(INPUT_EXAMPLE)
    assert proba.shape[0] == len(INPUT_EXAMPLE)
    assert proba.sum(axis=1).round(6).eq(1.0).all()
    assert all(c.startswith(("OMIM:", "ORPHA:")) for c in proba.columns)
    requirements = (mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "m"))
                    + "/requirements.txt")
    text = open(requirements).read()
    assert "scikit-learn==" in text and "torch" not in text
