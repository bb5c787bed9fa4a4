"""A trained model logged as an MLflow pyfunc loads back and answers the most probable diseases, with signature and
explicit requirements."""

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
    top = loaded.predict(INPUT_EXAMPLE)
    assert set(top["patient"]) == set(range(len(INPUT_EXAMPLE))) and list(top["rank"][:3]) == [1, 2, 3]
    assert top["disease_id"].str.match(r"^(OMIM|ORPHA):").all() and (top["probability"].between(0, 1)).all()
    assert top.groupby("patient")["probability"].apply(lambda p: p.is_monotonic_decreasing).all()
    assert len(loaded.predict(INPUT_EXAMPLE, params={"top_k": 3})) == 3 * len(INPUT_EXAMPLE)
    requirements = (mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "m"))
                    + "/requirements.txt")
    text = open(requirements).read()
    assert "scikit-learn==" in text and "xgboost-cpu==" in text and "torch" not in text
