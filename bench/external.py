"""Benchmark: `dxlab evaluate-external` on a file of 5,000 cases it has never seen (issue 5: under 10 minutes).

The file is built from the shared case reports under new case and publication ids, so the command treats every
case as new: it scores the reference cases too (to train the reranker) and reranks with the model trained on all
of them. Only time and memory are measured: accuracy on such a file means nothing (the cases are the reference
cases renamed), so none is reported. Writes bench/external.json and bench/external.md.

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
                             cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/m.db"})
        seconds = time.perf_counter() - start
        if run.returncode:
            print(run.stdout[-2000:], run.stderr[-4000:], sep="\n")
            return run.returncode
        metrics = json.loads((Path(tmp) / "out" / "metrics.json").read_text())
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB on Linux
    result = {"cases": args.n, "seconds": round(seconds, 1), "peak_rss_gb": round(peak_gb, 2),
              "reference_cases": metrics["reference_cases"], "universe_size": metrics["universe_size"],
              "reranked": "reranker" in metrics, "timings_s": {k: round(v, 1) for k, v in metrics["timings"].items()},
              "cpus": os.cpu_count(), "python": platform.python_version(), "load_average_end": os.getloadavg()}
    (out / "external.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# `dxlab evaluate-external` on an unseen file", "",
             f"{args.n:,} cases under new case and publication ids (the shared reports renamed), the default "
             f"{metrics['reference_cases']:,} reference cases, {metrics['universe_size']:,} diseases ranked per case, "
             "every ranker side by side, the reranker trained on the reference cases' scores (computed in the same "
             "run), the ablations included: the default command as a user runs it. Produced by `make bench` "
             "(`bench/external.py`); time and memory only -- accuracy on renamed reference cases means nothing.", "",
             "| cases | wall time | peak memory | goal |", "|---|---|---|---|",
             f"| {args.n:,} | {seconds / 60:.1f} min ({seconds:.0f} s) | {peak_gb:.1f} GB | under 10 minutes |", "",
             "Time by part (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result["timings_s"].items()) + ".",
             f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average at the end "
             f"{os.getloadavg()[0]:.1f}."]
    (out / "external.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
