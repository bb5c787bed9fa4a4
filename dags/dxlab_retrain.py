"""Airflow DAG `dxlab_retrain`: every day, pick up new patient files, check drift, retrain when needed and promote
through the approval gate. Each task runs one step of `dxlab retrain` in the project's own environment
(`DXLAB_PROJECT/.venv/bin/dxlab`), so Airflow needs none of dxlab's dependencies; results pass between steps
through reports/retrain/steps.json. The same flow runs without Airflow as `dxlab retrain`.

    find_new_files >> check_drift >> decide >> prepare_data >> train_and_evaluate >> approve >> report

`decide` exits 99 when there are too few new files and no drift: Airflow marks it skipped and skips the rest.
The champion alias moves only in `approve`, and only when the new model passes the gates (conf/approval/).

Environment: DXLAB_PROJECT (default: the folder above dags/), DXLAB_BIN (default DXLAB_PROJECT/.venv/bin/dxlab),
DXLAB_RETRAIN_SCHEDULE (default @daily).
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta
from pathlib import Path

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

PROJECT = os.environ.get("DXLAB_PROJECT", str(Path(__file__).resolve().parents[1]))
DXLAB = os.environ.get("DXLAB_BIN", str(Path(PROJECT) / ".venv" / "bin" / "dxlab"))
SKIP = 99  # dxlab.retrain.SKIP_EXIT_CODE


def step(name: str, *args: str) -> str:
    # a trailing space keeps Airflow from reading a command that ends in ".sh" as a template file
    return f"cd {shlex.quote(PROJECT)} && {shlex.quote(DXLAB)} retrain --step {name} {' '.join(args)} "


with DAG(
    dag_id="dxlab_retrain",
    description="new files -> drift -> retrain -> approval gate -> champion",
    schedule=os.environ.get("DXLAB_RETRAIN_SCHEDULE", "@daily"),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "dxlab", "retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["dxlab", "retraining"],
) as dag:
    find_new_files = BashOperator(task_id="find_new_files", bash_command=step("find"))
    check_drift = BashOperator(task_id="check_drift", bash_command=step("drift"))
    decide = BashOperator(task_id="decide", bash_command=step("decide"), skip_on_exit_code=SKIP)
    prepare_data = BashOperator(task_id="prepare_data",
                                bash_command=step("pipeline", "--stages", "ingest", "validate", "preprocess"))
    train_and_evaluate = BashOperator(task_id="train_and_evaluate", execution_timeout=timedelta(hours=2),
                                      bash_command=step("pipeline", "--stages", "features", "train", "evaluate"))
    approve = BashOperator(task_id="approve", bash_command=step("pipeline", "--stages", "approve"))
    report = BashOperator(task_id="report", bash_command=step("finish"))

    find_new_files >> check_drift >> decide >> prepare_data >> train_and_evaluate >> approve >> report
