"""The container, built and run: the test project's champion bundled (`dxlab bundle`) and baked into the image of
deploy/Dockerfile (the dependency layers cached between runs; `make test` starts building them in the background
before pytest, `deploy/build_image.sh --deps-only`), run as a non-root user on a read-only root filesystem on a
random loopback port; it must turn healthy, answer a real case with the registry's version, refuse a bad request
and count both in /metrics. Under CI (CI=true) a missing engine is a failure, never a skip."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO, SHARED_CASES, free_port, require

DEPS_PID = REPO / "build" / "image-deps.pid"  # the background build `make test` starts
TAG = "dxlab:test"


def _engine() -> str:
    run = subprocess.run([str(REPO / "deploy" / "docker_engine.sh")], capture_output=True, text=True)
    if run.returncode != 0:
        message = f"no Docker engine: {run.stderr.strip()[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run the container tests: deploy/docker_engine.sh installs docker.io)")
        pytest.skip(message)
    return run.stdout.strip().splitlines()[-1]


def _wait_for_background_build(seconds: float = 900) -> None:
    """The dependency stage `make test` builds beside pytest: wait for it (its layers are what makes the build
    below fast); building without it is correct, only slower."""
    if not DEPS_PID.exists():
        return
    pid = int(DEPS_PID.read_text().strip() or 0)
    deadline = time.monotonic() + seconds
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(2)


@pytest.fixture(scope="module")
def docker() -> str:
    return _engine()


@pytest.fixture(scope="module")
def image(docker, prod_project, tmp_path_factory) -> str:
    """The test project's champion in the image: a build context with the repository's sources and its bundle."""
    from dxlab.serving.bundle import export_bundle

    _, cfg = prod_project
    _wait_for_background_build()  # it writes the local torch wheel and the base it chose under build/image
    context = tmp_path_factory.mktemp("image-context")
    for name in ("pyproject.toml", "README.md", "params.yaml"):
        shutil.copy(REPO / name, context / name)
    for name in ("src", "conf", "deploy"):
        shutil.copytree(REPO / name, context / name, ignore=shutil.ignore_patterns("__pycache__"))
    (context / "build" / "image" / "wheels").mkdir(parents=True)
    wheels = REPO / "build" / "image" / "wheels"
    torch_arg = []
    for wheel in sorted(wheels.glob("torch-*.whl")) if wheels.exists() else []:
        shutil.copy(wheel, context / "build" / "image" / "wheels" / wheel.name)
        torch_arg = ["--build-arg", "TORCH_INDEX="]
    info = export_bundle(cfg, context / "build" / "image" / "bundle")
    assert info["version"] == "1" and (context / "build" / "image" / "bundle" / "model.joblib").exists()
    base = (REPO / "build" / "image" / "base.txt").read_text().strip() if (REPO / "build" / "image" /
                                                                          "base.txt").exists() else ""
    base_arg = ["--build-arg", f"BASE={base}"] if base else []
    build = subprocess.run([docker, "build", "-q", "-f", "deploy/Dockerfile", *base_arg, *torch_arg, "-t", TAG, "."],
                           cwd=context, capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    return TAG


def _call(url: str, body: dict | None = None, key: str = "", timeout: float = 30) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", "X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def container(docker, image):
    key = secrets.token_hex(16)
    port = free_port()
    name = f"dxlab-test-{port}"
    run = subprocess.run([docker, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
                          "-p", f"127.0.0.1:{port}:8000", "-e", f"DXLAB_API_KEY={key}", image],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    try:
        deadline = time.monotonic() + 180
        status = ""
        while time.monotonic() < deadline:
            status = subprocess.run([docker, "inspect", "--format", "{{.State.Health.Status}}", name],
                                    capture_output=True, text=True).stdout.strip()
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(2)
        logs = subprocess.run([docker, "logs", name], capture_output=True, text=True)
        assert status == "healthy", f"container {status}: {(logs.stdout + logs.stderr)[-3000:]}"
        yield {"url": f"http://127.0.0.1:{port}", "key": key, "name": name}
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True)


def test_image_runs_as_a_non_root_user_without_compilers_or_tests(docker, image):
    user = subprocess.run([docker, "image", "inspect", "--format", "{{.Config.User}}", image],
                          capture_output=True, text=True).stdout.strip()
    assert user and user not in ("root", "0")
    probe = subprocess.run([docker, "run", "--rm", "--entrypoint", "sh", image, "-c",
                            "id -u; command -v gcc cc g++ || true; ls /app; if test -d /app/tests; then echo TESTS; fi"],
                           capture_output=True, text=True)
    lines = probe.stdout.split()
    assert probe.returncode == 0 and lines[0] != "0", probe.stderr
    assert not any(t.endswith(("gcc", "/cc", "g++")) for t in lines), lines
    assert "TESTS" not in lines and "bundle" in lines


def test_the_container_answers_a_real_case_and_refuses_a_bad_request(container):
    url, key = container["url"], container["key"]
    case = json.loads(require(SHARED_CASES, "the shared case reports").open().readline())
    patient = {"patient_id": "case-1", "findings": case["observed"], "excluded": case["excluded"],
               "age": case.get("age_years") or 30.0}
    status, text = _call(f"{url}/v1/predict", {"patients": [patient]}, key)
    assert status == 200, text
    body = json.loads(text)
    assert body["model_version"] == "1"  # the registry version the bundle was exported from
    (prediction,) = body["predictions"]
    assert prediction["patient_id"] == "case-1" and prediction["diagnoses"][0]["name"]
    assert 0 < prediction["diagnoses"][0]["probability"] <= 1
    # without the key: refused; a malformed patient: 422 naming the field
    assert _call(f"{url}/v1/predict", {"patients": [patient]}, "")[0] == 401
    status, text = _call(f"{url}/v1/predict", {"patients": [{**patient, "age": "old"}]}, key)
    assert status == 422 and "age" in text
    status, metrics = _call(f"{url}/metrics")
    assert status == 200
    counted = {line.split(" ")[0] for line in metrics.splitlines() if line.startswith("dxlab_requests_total{")}
    assert any('status="200"' in c for c in counted) and any('status="422"' in c for c in counted), counted


def test_the_root_filesystem_is_read_only(docker, container):
    probe = subprocess.run([docker, "exec", container["name"], "sh", "-c", "touch /app/x 2>&1; echo $?"],
                           capture_output=True, text=True)
    assert probe.stdout.strip().splitlines()[-1] != "0"
