"""Production benchmarks (`make bench`): batch prediction throughput at 100,000 patients, and the API's latency
(p50 / p99) and throughput under load on loopback, side by side with `mlflow models serve` on the same model.

Run from the project after `make repro`:  .venv/bin/python bench/production.py [--patients 100000]
Writes bench/production.json and bench/production.md. Everything runs on 127.0.0.1; every load run is bounded in
time. The load generator is wrk when installed (Debian package `wrk`), else a bounded Python client (httpx).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


# -- batch ----------------------------------------------------------------------------------------------------
def make_patients(raw_dir: Path, out_dir: Path, n: int, n_files: int, notes: bool = True) -> int:
    """`n` patients in `n_files` daily files, replicating the simulator's rows under new ids (bad rows included,
    so validation and quarantine are part of the timing). notes=False: the note column emptied (coded findings
    only: what the model costs without the annotator)."""
    raw = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(raw_dir.glob("patients_*.csv"))],
                    ignore_index=True)
    if not notes and "note" in raw:
        raw["note"] = ""
    copies = -(-n // len(raw))
    big = pd.concat([raw.assign(patient_id=f"B{c:03d}-" + raw["patient_id"]) for c in range(copies)],
                    ignore_index=True).head(n)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_file = -(-n // n_files)
    for i in range(n_files):
        big.iloc[i * per_file:(i + 1) * per_file].to_csv(out_dir / f"patients_2030-01-{i + 1:02d}.csv", index=False)
    return len(big)


def bench_batch(cfg, input_dir: Path, label: str, **options) -> dict:
    """`dxlab predict` run as a user runs it, in a process of its own (start-up, imports and model loading included;
    one configuration's leftovers -- a Dask cluster shutting down -- never slow the next)."""
    out = Path(tempfile.mkdtemp(prefix="dxlab-bench-batch-"))
    dxlab = str(Path(sys.executable).with_name("dxlab"))
    flags = ["--engine", options["engine"]]
    if "n_jobs" in options:
        flags += ["--n-jobs", str(options["n_jobs"])]
    if "n_workers" in options:
        flags += ["--workers", str(options["n_workers"])]
    try:
        start = time.perf_counter()
        run = subprocess.run([dxlab, "predict", "--input", str(input_dir), "--output", str(out), "--overwrite",
                              "--no-progress", *flags], capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    summary = json.loads(run.stdout[run.stdout.index("{"):])
    return {"label": label, "engine": summary["engine"], "n_rows": summary["n_rows"], "n_scored": summary["n_scored"],
            "n_quarantined": summary["n_quarantined"], "seconds": round(seconds, 2),
            "scoring_seconds": summary["seconds"], "patients_per_second": round(summary["n_rows"] / seconds, 1),
            "model": summary["model"], "model_version": summary["model_version"], **options}


# -- servers and load --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], ready: str, env: dict, seconds: float = 180) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile(prefix="dxlab-bench-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(command, cwd=os.getcwd(), env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[:3]} exited {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(ready, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"{ready} not ready after {seconds} s: {Path(log.name).read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        r.read()
        return r.status


def sequential_latency(url: str, bodies: list[bytes], n: int) -> dict:
    """One request at a time, one patient each, cycling through `bodies`: the latency a single caller sees."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        assert post(url, bodies[i % len(bodies)]) == 200
        times.append(time.perf_counter() - start)
    times.sort()
    return {"requests": n, "p50_ms": round(1000 * times[len(times) // 2], 2),
            "p99_ms": round(1000 * times[min(len(times) - 1, int(0.99 * len(times)))], 2),
            "mean_ms": round(1000 * statistics.fmean(times), 2)}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def wrk_load(url: str, body: bytes, seconds: int, connections: int) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                 f"wrk.body = [==[{body.decode()}]==]\n")
    script.close()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"tool": "wrk", "connections": connections, "seconds": seconds,
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": round(_ms(pct["50"]), 2), "p99_ms": round(_ms(pct["99"]), 2),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def python_load(url: str, body: bytes, seconds: int, connections: int) -> dict:
    """Closed-loop load with `connections` concurrent clients for at most `seconds` (no wrk on the machine)."""
    import asyncio

    import httpx

    async def run() -> tuple[list[float], int]:
        times: list[float] = []
        failures = 0
        deadline = time.perf_counter() + seconds

        async def client(c: httpx.AsyncClient) -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                r = await c.post(url, content=body, headers={"content-type": "application/json"})
                times.append(time.perf_counter() - start)
                failures += r.status_code != 200

        async with httpx.AsyncClient(timeout=30) as c:
            await asyncio.gather(*(client(c) for _ in range(connections)))
        return times, failures

    times, failures = asyncio.run(run())
    times.sort()
    return {"tool": "python-httpx", "connections": connections, "seconds": seconds, "requests": len(times),
            "requests_per_second": round(len(times) / seconds, 1),
            "p50_ms": round(1000 * times[len(times) // 2], 2),
            "p99_ms": round(1000 * times[min(len(times) - 1, int(0.99 * len(times)))], 2), "non_2xx": failures}


def load(url: str, body: bytes, seconds: int, connections: int) -> dict:
    return (wrk_load if shutil.which("wrk") else python_load)(url, body, seconds, connections)


def bench_api(patients: list[dict], seconds: int, connections: int, env: dict) -> list[dict]:
    """dxlab serve with the champion's whole answer, with probabilities only, and `mlflow models serve` on the same
    registered model: sequential latency over the patients, then load with the first one."""
    dxlab, mlflow_bin = str(Path(sys.executable).with_name("dxlab")), str(Path(sys.executable).with_name("mlflow"))
    api_bodies = [json.dumps(p).encode() for p in patients]
    mlflow_bodies = [json.dumps({"dataframe_split": {
        "columns": ["findings", "excluded", "history", "age", "sex", "family_history"],
        "data": [[";".join(p["findings"]), ";".join(p["excluded"]), "", p["age"], p["sex"], 0.0]]}}).encode()
        for p in patients]
    variants = [
        ("dxlab serve (names, findings for and against, types, anomaly)", [dxlab, "serve", "--insecure-no-api-key"],
         [], "/v1/predict",
         api_bodies, "/readyz"),
        ("dxlab serve (probabilities only)", [dxlab, "serve", "--insecure-no-api-key"],
         ["serve.api.explain_method=none", "serve.anomaly_detector=null"], "/v1/predict", api_bodies, "/readyz"),
        ("mlflow models serve (pyfunc, same model: top 10)", [mlflow_bin, "models", "serve", "-m",
                                                              "models:/dxlab@champion", "--env-manager", "local",
                                                              "-w", "1", "-h", "127.0.0.1"],
         None, "/invocations", mlflow_bodies, "/ping"),
    ]
    results = []
    for label, command, overrides, path, bodies, ready in variants:
        port = free_port()
        cmd = ([*command, "--host", "127.0.0.1", "--port", str(port), *overrides] if overrides is not None
               else [*command, "-p", str(port)])
        proc = start(cmd, f"http://127.0.0.1:{port}{ready}", env)
        try:
            url = f"http://127.0.0.1:{port}{path}"
            for body in bodies[:20]:  # warm-up
                post(url, body)
            results.append({"server": label, "sequential": sequential_latency(url, bodies, 200),
                            "load": load(url, bodies[0], seconds, connections)})
            print(f"  {label}: {results[-1]}", flush=True)
        finally:
            stop(proc)
    return results


def real_patients(n: int = 200) -> list[dict]:
    """`n` shared case reports as API patients (the latency of real presentations), else simulated test patients."""
    import random

    cases = ROOT.parent / "shared" / "data" / "phenopackets" / "cases.jsonl"
    if not cases.exists():
        return []
    rows = [json.loads(line) for line in cases.open()]
    random.Random(0).shuffle(rows)
    return [{"findings": r["observed"], "excluded": r["excluded"], "age": r["age_years"],
             "sex": {"MALE": "M", "FEMALE": "F"}.get(r["sex"])} for r in rows[:n] if r["observed"]]


# -- report ---------------------------------------------------------------------------------------------------
def _busy(result: dict) -> str:
    loads = [*result["load_average_at_start"][:1], *result["load_average_at_end"][:1]]
    cores = os.cpu_count() or 1
    return (f" (above {cores} on this {cores}-core machine: other processes competed for the cores)"
            if max(loads) > cores else "")


def markdown(result: dict) -> str:
    lines = ["# Production benchmarks\n", f"Machine: {result['machine']}. Model: {result['model']} version "
             f"{result['model_version']} (the registry's champion, {result.get('universe_size', '?'):,} diseases), "
             "anomaly detector "
             f"{'on' if result['anomaly_detector'] else 'absent'}. Produced by `bench/production.py`; load average "
             f"(1/5/15 min) {result['load_average_at_start']} at the start, {result['load_average_at_end']} at the "
             f"end{_busy(result)}.\n",
             "## Batch prediction (`dxlab predict`)\n",
             f"{result['batch_patients']:,} patients in {result['batch_files']} daily CSV files (the simulator's "
             "rows under new ids, bad rows included): read, pseudonymise, validate, quarantine, score (top-5, "
             "anomaly, key findings), write parquet. Wall time of `dxlab predict` as a user runs it, each "
             "configuration in a process of its own (start-up and loading the model included). Every simulated patient "
             "comes with a clinical note, read by the annotator (`dxlab.data.notes`); the last rows are the same "
             "patients with the note column emptied (coded findings only: the model's own cost).\n",
             "| engine | workers | notes | patients | quarantined | seconds | patients / s |",
             "|---|---|---|---|---|---|---|"]
    for b in result["batch"]:
        workers = b.get("n_workers") or b.get("n_jobs") or 1
        notes = "read" if b.get("notes", True) else "none (coded findings)"
        lines.append(f"| {b['label']} | {workers} | {notes} | {b['n_rows']:,} | {b['n_quarantined']:,} | "
                     f"{b['seconds']:.1f} | {b['patients_per_second']:,.0f} |")
    lines += ["", "Target: 100,000 patients in under 60 s on 2 cores with the default champion.\n"]
    if "api" not in result:
        return "\n".join(lines) + "\n"
    lines += ["## Real-time API (one patient per request, loopback)\n",
              f"Sequential: 200 requests one after another, each one patient ({result['api_patients']}). Under load: "
              f"{result['api_load_tool']}, "
              f"{result['api_connections']} connections for {result['api_seconds']} s against one server process.\n",
              "| server | sequential p50 ms | sequential p99 ms | load p50 ms | load p99 ms | requests / s | non-2xx |",
              "|---|---|---|---|---|---|---|"]
    for a in result["api"]:
        seq, under = a["sequential"], a["load"]
        lines.append(f"| {a['server']} | {seq['p50_ms']} | {seq['p99_ms']} | {under['p50_ms']} | {under['p99_ms']} | "
                     f"{under['requests_per_second']:.0f} | {under['non_2xx']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=15, help="duration of each load run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench"))
    parser.add_argument("--project", default=str(ROOT), help="project folder (params.yaml, models, mlflow.db)")
    args = parser.parse_args(argv)
    os.chdir(args.project)
    from dxlab.config import load_params
    from dxlab.data.schema import read_parquet
    from dxlab.tracking.mlflow_tracking import tracking_uri

    cfg = load_params(["serve.batch.progress=false"])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(cfg), "DXLAB_API_KEY": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn for mlflow
           "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    result = {"machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                         f"Python {platform.python_version()}",
              "anomaly_detector": Path(cfg.serve.anomaly_detector).exists(),
              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    work = Path(tempfile.mkdtemp(prefix="dxlab-bench-"))
    try:
        inbox = work / "inbox"
        result["batch_patients"] = make_patients(Path(cfg.serve.batch.input), inbox, args.patients, args.files)
        result["batch_files"] = args.files
        coded = work / "coded"
        make_patients(Path(cfg.serve.batch.input), coded, args.patients, args.files, notes=False)
        runs = [("local", inbox, {"engine": "local", "n_jobs": 1}),
                ("local, 2 processes", inbox, {"engine": "local", "n_jobs": 2})]
        if not args.skip_dask:
            runs.append(("dask LocalCluster", inbox, {"engine": "dask", "n_workers": 2}))
        runs += [("local", coded, {"engine": "local", "n_jobs": 1}),
                 ("local, 2 processes", coded, {"engine": "local", "n_jobs": 2})]
        result["batch"] = []
        for label, folder, options in [] if args.skip_batch else runs:
            result["batch"].append({**bench_batch(cfg, folder, label, **options), "notes": folder == inbox})
            print(f"  batch {label}: {result['batch'][-1]}", flush=True)
        from dxlab.serving.scorer import model_version

        result["model"] = result["batch"][0]["model"] if result["batch"] else cfg.model.name
        result["model_version"] = model_version(cfg.serve.model, cfg.paths.models, tracking_uri(cfg))
        import joblib

        result["universe_size"] = len(joblib.load(Path(cfg.paths.models) / f"{cfg.model.name}.joblib").classes_)
        if not args.skip_api:
            patients = real_patients()
            result["api_patients"] = f"{len(patients)} real case reports in turn"
            if not patients:
                test = read_parquet(Path(cfg.paths.processed) / "test.parquet").head(200)
                patients = [{"findings": list(t["findings"]), "excluded": list(t["excluded"]),
                             "age": None if pd.isna(t["age"]) else float(t["age"]), "sex": t["sex"]}
                            for _, t in test.iterrows()]
                result["api_patients"] = f"{len(patients)} simulated test patients in turn"
            result["api"] = bench_api(patients, args.seconds, args.connections, env)
            result["api_load_tool"] = result["api"][0]["load"]["tool"]
            result["api_connections"], result["api_seconds"] = args.connections, args.seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "production.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "production.md").write_text(markdown(result))
    print(f"wrote {out / 'production.json'} and {out / 'production.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
