"""Time, memory and determinism of the knowledge stage (issue 15: under 60 s, byte-identical tables).

Runs `python -m dxlab.stages.knowledge` twice in fresh processes, each into its own temporary folder
(`paths.knowledge`, `paths.reports` overridden, so the project's tables are not touched), with the configuration
of params.yaml (`knowledge=merged` by default: both releases parsed and merged). Records wall time and peak
resident memory (`resource.getrusage` of the children) and whether the two
runs wrote byte-identical parquet tables. Writes bench/knowledge_stage.json and .md.

    .venv/bin/python bench/knowledge_stage.py [hydra overrides, e.g. knowledge=hpo]
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("terms", "aliases", "annotations", "diseases")


def one_run(folder: Path, overrides: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dxlab.stages.knowledge", f"paths.knowledge={folder / 'knowledge'}",
                    f"paths.reports={folder / 'reports'}", *overrides], cwd=ROOT, check=True,
                   capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "random"})
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; the largest child so far
    digests = {name: hashlib.sha256((folder / "knowledge" / f"{name}.parquet").read_bytes()).hexdigest()
               for name in TABLES}
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(max(peak, before) / 1024), "sha256": digests}


def main(overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="dxlab-knowledge-") as tmp:
        runs = [one_run(Path(tmp) / str(i), overrides) for i in range(2)]
    same = runs[0]["sha256"] == runs[1]["sha256"]
    record = {"overrides": overrides, "runs": runs, "byte_identical": same, "cpus": os.cpu_count()}
    out = ROOT / "bench" / "knowledge_stage"
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    seconds = ", ".join(f"{r['seconds']:.1f} s" for r in runs)
    out.with_suffix(".md").write_text(
        f"Knowledge stage ({' '.join(overrides) or 'params.yaml: knowledge=merged'}), two runs in fresh processes "
        f"on {os.cpu_count()} cores: {seconds}; peak memory {max(r['peak_rss_mb'] for r in runs):,} MB; tables "
        f"{'byte-identical' if same else 'DIFFERENT'} between the runs (`bench/knowledge_stage.py`).\n")
    print(out.with_suffix(".md").read_text(), end="")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
