"""Benchmark: `dxlab evaluate-external` with the champion on a file of 5,000 cases it has never seen (target: under
60 s, peak memory under 4 GB).

The file is built from the shared case reports under new case and publication ids, so the command treats every
case as new: each is scored by the champion as a new patient, with the side-by-side variants and the report, as a
user runs it. Only time and memory are measured: accuracy on such a file means nothing (the cases are the model's
training cases renamed), so none is reported. Writes bench/external.json and bench/external.md.

    .venv/bin/python bench/external.py [--n 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "phenopackets" / "cases.jsonl"


def unseen_file(n: int, path: Path) -> None:
    lines = SHARED.read_text().splitlines()
    rng = random.Random(0)
    out = []
    for i in range(n):
        record = json.loads(lines[rng.randrange(len(lines))])
        record["case_id"] = f"bench_case_{i}"
        record["pmid"] = f"BENCH:{i // 5}"  # new publications, five cases each
        out.append(json.dumps(record))
    path.write_text("\n".join(out) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--out", default=str(ROOT / "bench"))
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"{SHARED} not found: external benchmark skipped")
        return 0
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "unseen.jsonl"
        unseen_file(args.n, cases)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "dxlab.cli", "evaluate-external", "--cases", str(cases),
                              "--out", str(Path(tmp) / "out")],
                             cwd=ROOT, capture_output=True, text=True, env={**os.environ})
        seconds = time.perf_counter() - start
        if run.returncode:
            print(run.stdout[-2000:], run.stderr[-4000:], sep="\n")
            return run.returncode
        metrics = json.loads((Path(tmp) / "out" / "metrics.json").read_text())
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB on Linux
    result = {"cases": args.n, "seconds": round(seconds, 1), "peak_rss_gb": round(peak_gb, 2),
              "model": f"{metrics['model']} {metrics['model_version']}", "universe_size": metrics["universe_size"],
              "scoring_seconds": round(metrics["seconds"], 1), "cpus": os.cpu_count(),
              "python": platform.python_version(), "load_average_end": os.getloadavg()}
    (out / "external.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# `dxlab evaluate-external` on an unseen file", "",
             f"{args.n:,} cases under new case and publication ids (the shared reports renamed), scored by the "
             f"champion ({result['model']}) over {metrics['universe_size']:,} diseases, with the side-by-side "
             "variants, the report and its figures: the default command as a user runs it, loading the model "
             "included. Produced by `make bench` (`bench/external.py`); time and memory only -- accuracy on the "
             "model's own training cases renamed means nothing.", "",
             "| cases | wall time | of which scoring and report | peak memory | target |", "|---|---|---|---|---|",
             f"| {args.n:,} | {seconds:.0f} s | {result['scoring_seconds']:.0f} s | {peak_gb:.1f} GB | "
             "under 60 s and 4 GB |", "",
             f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average at the end "
             f"{os.getloadavg()[0]:.1f}."]
    (out / "external.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
