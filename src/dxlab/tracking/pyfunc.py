"""The MLflow pyfunc wrapper: patients in (findings as lists or 'HP:..;HP:..' strings), probabilities out."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

INPUT_EXAMPLE = pd.DataFrame({
    "findings": ["HP:0001250;HP:0001263", "HP:0004322"],
    "excluded": ["HP:0001627", ""],
    "history": ["", ""],
    "age": [4.0, 11.5],
    "sex": ["F", "M"],
    "family_history": [0.0, 1.0],
})


class DxlabModel(mlflow.pyfunc.PythonModel):
    """Wraps a fitted dxlab model (joblib artifact `model`); output columns are disease ids."""

    def load_context(self, context) -> None:
        import joblib

        self.model = joblib.load(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from dxlab.data.preprocess import coerce_patients

        patients = coerce_patients(pd.DataFrame(model_input))
        proba = self.model.predict_proba(patients)
        return pd.DataFrame(proba, columns=[str(c) for c in self.model.classes_])


def log_pyfunc(model_path: str | Path, name: str, pip_requirements: list[str]):
    """Log a saved model as a self-contained pyfunc (dxlab's code travels with it) with its signature."""
    import joblib
    from mlflow.models import infer_signature

    import dxlab
    from dxlab.data.preprocess import coerce_patients

    model = joblib.load(model_path)
    output = pd.DataFrame(model.predict_proba(coerce_patients(INPUT_EXAMPLE)),
                          columns=[str(c) for c in model.classes_])
    signature = infer_signature(INPUT_EXAMPLE, output)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={"model": str(model_path)},
        code_paths=[str(Path(dxlab.__file__).parent)],
        pip_requirements=pip_requirements,
        signature=signature,
        input_example=INPUT_EXAMPLE,
    )
