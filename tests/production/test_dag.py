"""The Airflow DAG loads in Airflow's DagBag with the expected tasks, in a separate virtual environment
(Airflow pins FastAPI below what the service uses). Create it with `make airflow-venv`."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = Path(os.environ.get("DXLAB_AIRFLOW_PYTHON", REPO / ".venv" / "airflow" / "bin" / "python"))

DAGBAG = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3
except ImportError:
    from airflow.models.dagbag import DagBag  # Airflow 2
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("dxlab_retrain")
print(json.dumps({
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dag_ids": sorted(bag.dags),
    "schedule": str(getattr(dag, "schedule", None) or getattr(dag, "timetable", "")),
    "catchup": getattr(dag, "catchup", None),
    "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "command": t.bash_command,
                          "skip_on_exit_code": sorted(t.skip_on_exit_code or [])} for t in dag.tasks} if dag else {},
}))
"""


@pytest.mark.integration
@pytest.mark.skipif(not AIRFLOW_PYTHON.exists(),
                    reason=f"no Airflow environment at {AIRFLOW_PYTHON}: `make airflow-venv` creates it")
def test_dag_loads_with_the_retraining_tasks(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "DXLAB_PROJECT": str(REPO),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([str(AIRFLOW_PYTHON), "-c", DAGBAG, str(REPO / "dags")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bag = json.loads(proc.stdout.strip().splitlines()[-1])
    assert bag["import_errors"] == {} and bag["dag_ids"] == ["dxlab_retrain"]
    tasks = bag["tasks"]
    chain = ["find_new_files", "check_drift", "decide", "prepare_data", "train_and_evaluate", "approve", "report"]
    assert list(tasks) == chain
    for upstream, downstream in zip(chain, chain[1:]):
        assert tasks[upstream]["downstream"] == [downstream]
    assert tasks["decide"]["skip_on_exit_code"] == [99]  # nothing new: the rest is skipped, not failed
    assert "--step find" in tasks["find_new_files"]["command"]
    assert "--stages approve" in tasks["approve"]["command"] and "--step finish" in tasks["report"]["command"]
    assert str(REPO) in tasks["prepare_data"]["command"] and bag["catchup"] is False
