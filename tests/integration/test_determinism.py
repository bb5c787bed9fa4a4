"""Same seed, same cohort: also across processes, whose string hashing (set order) differs."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SCRIPT = """
import hashlib, sys
from dxlab.knowledge.base import Knowledge
from dxlab.simulate.cohort import SimulatorConfig, simulate_patients
knowledge = Knowledge.load(sys.argv[1])
cohort = simulate_patients(knowledge, SimulatorConfig(n_diseases=40, n_patients=600, seed=3))
print(hashlib.sha256(cohort.patients.to_csv().encode() + cohort.panel.to_csv().encode()).hexdigest())
"""


def _run(knowledge_dir, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(knowledge_dir)], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_cohort_identical_across_processes(knowledge_dir):
    assert _run(knowledge_dir, "1") == _run(knowledge_dir, "2")


def test_knowledge_tables_identical_across_processes(tmp_path):
    script = ("from dxlab.knowledge.base import build_knowledge; import hashlib; t = build_knowledge(); "
              "print(hashlib.sha256(t['diseases'].to_json().encode()).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, check=True).stdout for seed in ("5", "6")]
    assert runs[0] == runs[1]
