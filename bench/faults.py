"""Soak and fault benchmarks of the production path (`make faults`): the API under sustained load with a share of
bad requests, and `dxlab predict` killed with SIGKILL mid-run and started again.

Run from the project after `make repro`:  .venv/bin/python bench/faults.py [--seconds 60 --clients 50]
Writes bench/faults.json and bench/faults.md. Everything runs on 127.0.0.1, bounded in time.

Soak: `dxlab serve` with the registry's champion and an API key (sent in X-API-Key); `--clients` concurrent clients
(closed loop: each sends its next request when the last one is answered) for `--seconds` post the shared case
reports one patient a request, in turn (simulated test patients when ../shared is missing), and one request in
twenty is bad on purpose: malformed JSON, an unknown field, a body over serve.api.max_body_bytes. Reported: requests,
requests / s, p50 / p99 latency of the good requests, answers by class, connection errors, and whether the service's
own /metrics counts equal the client's.

Fault: `--files` daily files of simulated patients (bench/production.py `make_patients`: the simulator's rows
under new ids, bad rows included) scored by `dxlab predict` in a subprocess, killed with SIGKILL (its whole process
group: a crash or the OOM killer) once `--kill-after` files are finished, then run again to the end. Reported: rows
lost (in an input, in no output), rows doubled (in the outputs more than once), the files the rerun scored again
although their output existed at the kill (work repeated), against the files finished before it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from production import ROOT, _busy, free_port, make_patients, real_patients, start, stop  # noqa: E402

BAD_EVERY = 20  # one request in twenty is bad on purpose (5 %)
PREDICT = "/v1/predict"


# -- soak -----------------------------------------------------------------------------------------------------
def good_bodies(cfg) -> tuple[list[bytes], str]:
    """Every shared case report as one patient (in a fixed shuffled order), else the simulated test patients."""
    patients = real_patients(10**9)
    if patients:
        return [json.dumps(p).encode() for p in patients], f"{len(patients):,} real case reports in turn"
    from dxlab.data.schema import read_parquet

    test = read_parquet(Path(cfg.paths.processed) / "test.parquet")
    patients = [{"findings": list(t["findings"]), "excluded": list(t["excluded"]),
                 "age": None if pd.isna(t["age"]) else float(t["age"]), "sex": t["sex"]} for _, t in test.iterrows()]
    return [json.dumps(p).encode() for p in patients], f"{len(patients):,} simulated test patients in turn"


def bad_bodies(max_body_bytes: int) -> list[tuple[str, bytes, int]]:
    """(kind, body, the answer it should get)."""
    return [("malformed JSON", b'{"findings": ["HP:0001250", "HP:0001263"', 400),
            ("unknown field", json.dumps({"findings": ["HP:0001250"], "blood_group": "0+"}).encode(), 422),
            ("oversized", b'{"findings": ["HP:0001250"], "note": "' + b"seizures " * (max_body_bytes // 9 + 1)
             + b'"}', 413)]


async def _load(base: str, key: str, good: list[bytes], bad: list[tuple[str, bytes, int]], seconds: float,
                clients: int) -> dict:
    import httpx

    headers = {"content-type": "application/json", "x-api-key": key}
    turn = itertools.count()
    latencies: list[float] = []
    statuses: Counter = Counter()  # (good | bad kind, status)
    errors: Counter = Counter()  # (good | bad kind, exception class)
    deadline = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            i = next(turn)
            if i % BAD_EVERY == BAD_EVERY - 1:
                kind, body, _ = bad[(i // BAD_EVERY) % len(bad)]
            else:
                kind, body = "good", good[i % len(good)]
            begin = time.perf_counter()
            try:
                r = await http.post(PREDICT, content=body, headers=headers)
            except httpx.TransportError as err:  # refused, reset, timed out: the client got no answer
                errors[(kind, type(err).__name__)] += 1
                continue
            statuses[(kind, r.status_code)] += 1
            if kind == "good":
                latencies.append(time.perf_counter() - begin)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return {"elapsed": time.perf_counter() - began, "latencies": latencies, "statuses": statuses, "errors": errors}


def served_counts(base: str) -> dict[str, int]:
    """The service's own count of /v1/predict answers by status (dxlab_requests_total on /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    counts: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dxlab_requests_total" and sample.labels.get("endpoint") == PREDICT:
                counts[sample.labels["status"]] += int(sample.value)
    return dict(sorted(counts.items()))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)


def soak(cfg, env: dict, seconds: float, clients: int) -> dict:
    good, described = good_bodies(cfg)
    bad = bad_bodies(int(cfg.serve.api.max_body_bytes))
    key = secrets.token_urlsafe(24)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dxlab = str(Path(sys.executable).with_name("dxlab"))
    proc = start([dxlab, "serve", "--host", "127.0.0.1", "--port", str(port)], f"{base}/readyz",
                 {**env, "DXLAB_API_KEY": key})
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=30) as r:
            ready = json.loads(r.read())
        run = asyncio.run(_load(base, key, good, bad, seconds, clients))
        time.sleep(0.5)  # the service counts a request once its last byte is sent
        served = served_counts(base)
    finally:
        stop(proc)
    statuses, errors = run["statuses"], run["errors"]
    by_class, client = Counter(), Counter()
    for (_, status), n in statuses.items():
        by_class[f"{status // 100}xx"] += n
        client[str(status)] += n
    expected = {kind: status for kind, _, status in bad}
    answered = sum(statuses.values())
    return {
        "seconds": seconds, "clients": clients, "patients": described, "bad_share": 1 / BAD_EVERY,
        "model": ready.get("model"), "model_version": ready.get("model_version"),
        "requests": answered + sum(errors.values()), "answered": answered,
        "requests_per_second": round(answered / run["elapsed"], 1),
        "good_p50_ms": _percentile(run["latencies"], 0.50), "good_p99_ms": _percentile(run["latencies"], 0.99),
        "status_2xx": by_class["2xx"], "status_4xx": by_class["4xx"], "status_5xx": by_class["5xx"],
        "connection_errors": sum(errors.values()),
        "connection_errors_by_kind": {f"{kind}: {name}": n for (kind, name), n in sorted(errors.items())},
        "by_kind": {f"{kind} -> {status}": n for (kind, status), n in sorted(statuses.items(), key=str)},
        "good_not_200": sum(n for (kind, status), n in statuses.items() if kind == "good" and status != 200),
        "bad_not_refused_as_expected": sum(n for (kind, status), n in statuses.items()
                                           if kind != "good" and status != expected[kind]),
        "client_counts": dict(sorted(client.items())), "metrics_counts": served,
        "metrics_equal_client": served == dict(sorted(client.items())),
    }


# -- fault ----------------------------------------------------------------------------------------------------
def _manifest(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["files"]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _outputs(out: Path) -> dict[str, int]:
    """Predictions files present (renamed into place: whole), by name: their modification time."""
    return {p.name: p.stat().st_mtime_ns for p in (out / "predictions").glob("*.parquet")}


def _row_counts(inbox: Path, out: Path) -> dict:
    """Every input row (file, row) against the outputs: scored (predictions) or quarantined, once."""
    rows = {(p.name, i) for p in sorted(inbox.glob("*.csv"))
            for i in range(1, len(pd.read_csv(p, dtype=str, keep_default_na=False)) + 1)}
    predictions = pd.concat([pd.read_parquet(p) for p in sorted((out / "predictions").glob("*.parquet"))],
                            ignore_index=True)
    scored = Counter(zip(predictions["source_file"], predictions["source_row"].astype(int)))
    quarantined: Counter = Counter()
    for path in sorted((out / "quarantine").glob("*.csv")):
        issues = pd.read_csv(path, keep_default_na=False)
        issues = issues[issues["source_row"].astype(int) > 0]
        quarantined.update(set(zip(issues["source_file"], issues["source_row"].astype(int))))  # one row, many issues
    seen = scored + quarantined
    return {"rows": len(rows), "rows_scored": sum(scored.values()), "rows_quarantined": sum(quarantined.values()),
            "rows_lost": len(rows - set(seen)), "rows_doubled": sum(1 for n in seen.values() if n > 1),
            "rows_unknown": len(set(seen) - rows),
            "patients_doubled": int(predictions["patient_id"].duplicated().sum())}


def fault(cfg, env: dict, work: Path, patients: int, files: int, kill_after: int) -> dict:
    inbox, out = work / "inbox", work / "out"
    make_patients(Path(cfg.serve.batch.input), inbox, patients, files)
    dxlab = str(Path(sys.executable).with_name("dxlab"))
    command = [dxlab, "predict", "--input", str(inbox), "--output", str(out), "--no-progress"]
    log = work / "predict.log"
    began = time.perf_counter()
    with log.open("wb") as sink:
        first = subprocess.Popen(command, cwd=os.getcwd(), env=env, stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # its own process group: workers die with it
        limit = time.monotonic() + 1800
        while len(_manifest(out)) < kill_after and first.poll() is None and time.monotonic() < limit:
            time.sleep(0.02)
        killed = first.poll() is None
        if killed:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = time.perf_counter() - began
    if not killed and first.returncode != 0:
        raise RuntimeError(f"dxlab predict exited {first.returncode}: {log.read_text()[-2000:]}")
    finished, outputs = _manifest(out), _outputs(out)

    began = time.perf_counter()
    again = subprocess.run(command, cwd=os.getcwd(), env=env, capture_output=True, text=True, timeout=3600)
    rerun_seconds = time.perf_counter() - began
    if again.returncode != 0:
        raise RuntimeError(f"the rerun exited {again.returncode}: {again.stderr[-2000:]}")
    summary = json.loads(again.stdout)
    after = _outputs(out)
    rewritten = sorted(name for name, stamp in outputs.items() if after.get(name) != stamp)
    finished_outputs = {Path(entry["output"]).name for entry in finished.values() if entry.get("output")}
    return {
        "files": files, "kill_after_files": kill_after, "killed": killed,
        "killed_after_seconds": round(killed_at, 1), "rerun_seconds": round(rerun_seconds, 1),
        "files_finished_before_kill": len(finished), "outputs_before_kill": len(outputs),
        "files_scored_by_rerun": summary["n_files_scored"], "files_skipped_by_rerun": summary["n_files_skipped"],
        "files_rescored_by_rerun": len(rewritten),  # work repeated: an output that existed at the kill, rewritten
        "finished_files_rescored": len(set(rewritten) & finished_outputs),
        "files_complete": len(_manifest(out)), "temp_files_left": len(list(out.rglob(".*.tmp"))),
        **_row_counts(inbox, out),
    }


# -- report ---------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    lines = ["# Soak and fault benchmarks\n",
             f"Machine: {result['machine']}. Produced by `bench/faults.py`; load average (1/5/15 min) "
             f"{result['load_average_at_start']} at the start, {result['load_average_at_end']} at the "
             f"end{_busy(result)}.\n"]
    if s := result.get("soak"):
        lines += ["## Soak: the API under sustained load, 5 % of requests bad on purpose\n",
                  f"`dxlab serve` ({s['model']} version {s['model_version']}, the registry's champion; API key "
                  f"required), {s['clients']} concurrent clients in a "
                  f"closed loop for {s['seconds']:g} s, one patient a request ({s['patients']}); one request in "
                  f"{BAD_EVERY} is malformed JSON, has an unknown field or is larger than serve.api.max_body_bytes.\n",
                  "| requests | requests / s | good p50 ms | good p99 ms | 2xx | 4xx | 5xx | connection errors | "
                  "good not 200 | bad not refused as expected | /metrics = client |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {s['requests']:,} | {s['requests_per_second']:,.1f} | {s['good_p50_ms']} | {s['good_p99_ms']} | "
                  f"{s['status_2xx']:,} | {s['status_4xx']:,} | {s['status_5xx']:,} | {s['connection_errors']:,} | "
                  f"{s['good_not_200']:,} | {s['bad_not_refused_as_expected']:,} | "
                  f"{'yes' if s['metrics_equal_client'] else 'no'} |", "",
                  "Answers by kind of request: " + ", ".join(f"{k}: {v:,}" for k, v in s["by_kind"].items())
                  + (". Connection errors: " + ", ".join(f"{k}: {v:,}" for k, v in
                                                         s["connection_errors_by_kind"].items())
                     if s["connection_errors"] else "") + ".\n"]
    if f := result.get("fault"):
        lines += ["## Fault: `dxlab predict` killed with SIGKILL, then run again\n",
                  f"{f['rows']:,} patients in {f['files']} daily CSV files (the simulator's rows under new ids, bad "
                  f"rows included); the run killed (SIGKILL to its process group) "
                  + (f"{f['killed_after_seconds']} s in, once {f['kill_after_files']} files were finished"
                     if f["killed"] else "-- never: it finished before the kill, the figures below prove nothing")
                  + f", then run again to the end ({f['rerun_seconds']} s).\n",
                  "| files | rows | scored | quarantined | rows lost | rows doubled | files finished before the kill | "
                  "outputs at the kill | files rescored by the rerun | of them finished | temp files left |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {f['files']} | {f['rows']:,} | {f['rows_scored']:,} | {f['rows_quarantined']:,} | "
                  f"{f['rows_lost']:,} | {f['rows_doubled']:,} | {f['files_finished_before_kill']} | "
                  f"{f['outputs_before_kill']} | {f['files_rescored_by_rerun']} | {f['finished_files_rescored']} | "
                  f"{f['temp_files_left']} |", "",
                  "A row is lost when it is in an input file and in neither the predictions nor the quarantine, "
                  "doubled when it is in them more than once; a file is rescored when its predictions existed at the "
                  "kill and the rerun wrote them again (work repeated).\n"]
    return "\n".join(lines)


def problems(result: dict) -> list[str]:
    """What a healthy service and batch never show."""
    found = []
    if s := result.get("soak"):
        found += [f"soak: {k} = {s[k]}" for k in ("status_5xx", "connection_errors", "good_not_200",
                                                   "bad_not_refused_as_expected") if s[k]]
        found += [] if s["metrics_equal_client"] else ["soak: /metrics counts differ from the client's"]
    if f := result.get("fault"):
        found += [] if f["killed"] else ["fault: the run finished before it could be killed (more --patients)"]
        found += [f"fault: {k} = {f[k]}" for k in ("rows_lost", "rows_doubled", "rows_unknown", "patients_doubled",
                                                   "finished_files_rescored") if f[k]]
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="soak duration")
    parser.add_argument("--clients", type=int, default=50, help="concurrent soak clients")
    parser.add_argument("--patients", type=int, default=12_000, help="fault run: patients over all files")
    parser.add_argument("--files", type=int, default=12, help="fault run: daily files")
    parser.add_argument("--kill-after", type=int, default=3, help="fault run: SIGKILL once this many files finished")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--skip-fault", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--project", default=str(ROOT), help="project folder (params.yaml, models, mlflow.db)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    os.chdir(args.project)
    from dxlab.config import load_params
    from dxlab.tracking.mlflow_tracking import tracking_uri

    cfg = load_params([])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(cfg), "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                         f"Python {platform.python_version()}",
              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    if not args.skip_soak:
        result["soak"] = soak(cfg, env, args.seconds, args.clients)
        print(f"  soak: {result['soak']}", flush=True)
    if not args.skip_fault:
        work = Path(tempfile.mkdtemp(prefix="dxlab-bench-faults-"))
        try:
            result["fault"] = fault(cfg, env, work, args.patients, args.files, args.kill_after)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"  fault: {result['fault']}", flush=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["problems"] = problems(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "faults.md").write_text(markdown(result))
    print(f"wrote {out / 'faults.json'} and {out / 'faults.md'}")
    for problem in result["problems"]:
        print(f"PROBLEM {problem}", file=sys.stderr)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
