"""Packaging beside the container tests (tests/production/test_container.py): the compose file and dashboard parse,
the alert rules pass promtool, and the image's entry command serves its bundle in the virtual environment while a
real Prometheus scrapes it on loopback."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from helpers import free_port, require_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(dxlab_[a-z_]+|up)\b", expr)}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "dxlab.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_compose_file_wires_the_services():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mlflow", "api", "prometheus", "grafana", "node-exporter"} <= set(services)
    api = services["api"]
    assert api["image"] == "dxlab:latest" and api["read_only"] is True  # `make image`: the champion baked in
    assert api["environment"]["DXLAB_API_KEY"].startswith("${DXLAB_API_KEY:?")  # no key, no start
    assert api["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in prom["scrape_configs"]}
    assert targets["dxlab-api"] == ["api:8000"] and prom["rule_files"] == ["alerts.yml"]


def test_dashboard_parses_and_uses_metrics_the_service_exports():
    from dxlab.monitor.drift import prometheus_text
    from dxlab.serving.metrics import ServiceMetrics

    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "dxlab.json").read_text())
    assert dashboard["uid"] and len(dashboard["panels"]) >= 8
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"])
    from prometheus_client import generate_latest

    exported = set(re.findall(r"^# TYPE (\S+)", generate_latest(ServiceMetrics().registry).decode(), re.M))
    report = {"inputs": {"age": {"psi": 0.1, "p_value": 0.5, "drift": False}}, "predictions": {},
              "n_patients": 1, "performance": {"current": {"top1": 1.0, "top3": 1.0}, "drop": {"top1": 0.0}},
              "summary": {"drift": False, "n_drifted": 0, "performance_degraded": False}}
    exported |= set(re.findall(r"^# TYPE (\S+)", prometheus_text(report), re.M))
    counters = {f"{n}_total" for n in exported} | {f"{n}_bucket" for n in exported}
    used = set().union(*(_metric_names(e) for e in _dashboard_exprs()))
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    used |= _metric_names(alerts) - {"up"}
    assert used and used <= exported | counters, used - exported - counters


def test_alert_rules_and_dashboard_queries_pass_promtool(tmp_path):
    promtool = require_tool("promtool", "prometheus")
    for args in (["check", "config", DEPLOY / "prometheus" / "prometheus.yml"],
                 ["check", "rules", DEPLOY / "prometheus" / "alerts.yml"],
                 ["test", "rules", DEPLOY / "prometheus" / "alerts_test.yml"]):
        proc = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # every dashboard query is valid PromQL: promtool parses them as recording rules
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e}
                                                        for i, e in enumerate(_dashboard_exprs())]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard_rules.yml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _dockerfile_command() -> tuple[list[str], list[str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    health = json.loads(re.search(r"HEALTHCHECK [^\[]*?CMD (\[[^\n]*\])$", text, re.M).group(1))
    return entry + cmd, health


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM \$\{BASE\} AS ", text, re.M)) == 2 and "COPY --from=deps /opt/venv" in text
    assert re.search(r"^ARG BASE=python:3.11-slim$", text, re.M) and not re.search(r"^# *syntax=", text, re.M)
    assert re.search(r"^USER dxlab$", text, re.M) and "HEALTHCHECK" in text
    # the CPU wheel, never CUDA: a local wheel or the PyTorch CPU index, and a CUDA library fails the build
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text and '"torch==2.13.0"' in text
    assert text.count("grep -qiE '^nvidia-'") == 2


def _get(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait(url: str, seconds: float, proc=None) -> str:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            status, body = _get(url)
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {seconds} s")


@pytest.fixture()
def served_api(prod_project, tmp_path):
    """The image's ENTRYPOINT + CMD, run with the venv's `dxlab` on a loopback port, in a project folder laid out as
    the image's /app (the config, the champion's bundle)."""
    from dxlab.serving.bundle import export_bundle

    _, cfg = prod_project
    root = tmp_path / "app"
    (root / "conf").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text(OmegaConf.to_yaml(cfg))
    export_bundle(cfg, root / "bundle")
    command, health = _dockerfile_command()
    port = free_port()
    command = [str(Path(sys.executable).with_name(command[0])), *command[1:]]
    command = [("127.0.0.1" if c == "0.0.0.0" else str(port) if c == "8000" else c.replace("/app/", f"{root}/"))
               for c in command]
    env = {**os.environ, "DXLAB_ROOT": str(root), "DXLAB_PSEUDONYM_KEY": "test-key", "DXLAB_API_KEY": ""}
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", 90, proc)
        yield port, [c.replace("8000", str(port)) for c in health]
    finally:
        _stop(proc)


@pytest.mark.integration
def test_image_command_serves_and_prometheus_scrapes_it(served_api, prod_project, tmp_path):
    port, health = served_api
    assert subprocess.run([sys.executable if health[0] == "python" else health[0], *health[1:]],
                          timeout=10).returncode == 0  # the image's HEALTHCHECK command
    from dxlab.data.schema import read_parquet

    root, _ = prod_project
    findings = list(read_parquet(root / "data" / "processed" / "test.parquet")["findings"].iloc[0])
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", method="POST",
                                     data=json.dumps({"findings": findings}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200 and json.loads(r.read())["predictions"][0]["diagnoses"]
    prometheus = require_tool("prometheus", "prometheus")
    prom_port = free_port()
    config = tmp_path / "prometheus"
    config.mkdir()
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", config / "alerts.yml")
    (config / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "dxlab-api", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    prom = subprocess.Popen([prometheus, f"--config.file={config / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(f"http://127.0.0.1:{prom_port}/-/ready", 30, prom)
        query = urllib.parse.quote('dxlab_requests_total{endpoint="/v1/predict",status="200"}')
        deadline, result = time.time() + 30, []
        while time.time() < deadline and not result:
            result = json.loads(_get(f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}")[1])["data"]["result"]
            time.sleep(0.5)
        assert result and float(result[0]["value"][1]) >= 1
        up = json.loads(_get(f"http://127.0.0.1:{prom_port}/api/v1/query?query=up")[1])["data"]["result"]
        assert up[0]["value"][1] == "1"
        rules = json.loads(_get(f"http://127.0.0.1:{prom_port}/api/v1/rules")[1])["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"DxlabHighLatency", "DxlabInputDrift"}
    finally:
        _stop(prom)

