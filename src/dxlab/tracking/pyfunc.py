"""The MLflow pyfunc wrapper: patients in (findings as lists or 'HP:..;HP:..' strings), the most probable diseases
out -- one row per patient and rank: `patient` (row of the input), `rank`, `disease_id`, `name`, `probability`.

A diagnostic model ranks about 12,600 diseases: a column per disease would make every answer a 12,600-wide row,
so the pyfunc answers the first `top_k` (a param, default 10); `predict_proba` on the joblib artifact (what
`dxlab serve` loads) gives the whole distribution.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

INPUT_EXAMPLE = pd.DataFrame({
    "findings": ["HP:0001250;HP:0001263", "HP:0004322"],
    "excluded": ["HP:0001627", ""],
    "history": ["", ""],
    "age": [4.0, 11.5],
    "sex": ["F", "M"],
    "family_history": [0.0, 1.0],
})
TOP_K = 10


def top_diseases(model, patients: pd.DataFrame, top_k: int = TOP_K) -> pd.DataFrame:
    """The first `top_k` diseases of every patient, long format (patient, rank, disease_id, name, probability)."""
    classes = np.asarray(model.classes_).astype(str)
    if hasattr(model, "predict_top"):
        index, proba, _ = model.predict_top(patients, top_k)
    else:
        full = np.asarray(model.predict_proba(patients), dtype=float)
        index = np.argsort(-full, axis=1, kind="stable")[:, :top_k]
        proba = np.take_along_axis(full, index, axis=1)
    names = getattr(model, "disease_names_", {})
    k = index.shape[1]
    return pd.DataFrame({"patient": np.repeat(np.arange(len(patients)), k), "rank": np.tile(np.arange(1, k + 1),
                                                                                          len(patients)),
                         "disease_id": classes[index.ravel()],
                         "name": [names.get(d, "") for d in classes[index.ravel()]],
                         "probability": proba.ravel().round(6)})


class DxlabModel(mlflow.pyfunc.PythonModel):
    """Wraps a fitted dxlab model (joblib artifact `model`)."""

    def load_context(self, context) -> None:
        import joblib

        self.model = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from dxlab.data.preprocess import coerce_patients

        patients = coerce_patients(pd.DataFrame(model_input))
        return top_diseases(self.model, patients, int((params or {}).get("top_k", TOP_K)))


def log_pyfunc(model_path: str | Path, name: str, pip_requirements: list[str]):
    """Log a saved model as a self-contained pyfunc (dxlab's code travels with it) with its signature; the model's
    own extra requirements (xgboost, torch, imbalanced-learn: `dxlab.augment.extra_requirements`) are added."""
    import joblib
    from mlflow.models import infer_signature

    import dxlab
    from dxlab.augment import extra_requirements
    from dxlab.data.preprocess import coerce_patients

    model = joblib.load(model_path)
    pip_requirements = list(dict.fromkeys([*pip_requirements, *extra_requirements(model)]))
    output = top_diseases(model, coerce_patients(INPUT_EXAMPLE))
    with warnings.catch_warnings():  # "integer columns cannot hold missing values": patient and rank never miss
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(INPUT_EXAMPLE, output, params={"top_k": TOP_K})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"model": str(model_path)},
        code_paths=[str(Path(dxlab.__file__).parent)],
        pip_requirements=pip_requirements,
        signature=signature,
        input_example=INPUT_EXAMPLE,
    )
