"""MLflow models-from-code entry: the file MLflow runs to build the pyfunc (no cloudpickled object)."""

from mlflow.models import set_model

from dxlab.tracking.pyfunc import DxlabModel

set_model(DxlabModel())
