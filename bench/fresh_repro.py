"""A new user's first command, timed: `make repro` on a fresh clone of the committed main, `../shared` beside it,
nothing installed (a new .venv, the pipeline run from nothing). Writes bench/fresh_repro.{json,md}.

    python bench/fresh_repro.py            # from the project root; takes the whole pipeline's time (~15 min)

Target (issue "One diagnostic model"): under 10 minutes on this 2-core machine, installation included. The clone
uses the same package sources pip is configured with here; the DVC cache of the working tree is not used.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 600


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="dxlab-fresh-"))
    project = work / "project"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
        shared = (ROOT.parent / "shared").resolve()
        if shared.exists():
            (work / "shared").symlink_to(shared)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "DXLAB_"))}
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
        log = work / "repro.log"
        start = time.perf_counter()
        with open(log, "w") as out:
            code = subprocess.run(["make", "repro"], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
        seconds = time.perf_counter() - start
        text = log.read_text(errors="replace")
        stages = re.findall(r"Running stage '([^']+)'", text)
        install = _install_seconds(project)
        result = {"commit": commit, "exit_code": code, "seconds": round(seconds, 1),
                  "install_seconds": install, "stages_run": stages, "shared_data": shared.exists(),
                  "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
                  "load_average_end": [round(x, 2) for x in os.getloadavg()], "target_seconds": TARGET_SECONDS}
        (ROOT / "bench" / "fresh_repro.json").write_text(json.dumps(result, indent=2) + "\n")
        (ROOT / "bench" / "fresh_repro.md").write_text(markdown(result))
        print(markdown(result))
        if code:
            print(text[-4000:], file=sys.stderr)
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install_seconds(project: Path) -> float | None:
    """From the creation of .venv to the install stamp the Makefile writes (both file times)."""
    venv, stamp = project / ".venv" / "pyvenv.cfg", project / ".venv" / ".installed"
    if venv.exists() and stamp.exists():
        return round(stamp.stat().st_mtime - venv.stat().st_mtime, 1)
    return None


def markdown(r: dict) -> str:
    verdict = "met" if r["exit_code"] == 0 and r["seconds"] < r["target_seconds"] else "missed"
    install = f"{r['install_seconds'] / 60:.1f} min" if r.get("install_seconds") is not None else "n/a"
    return (f"# `make repro` on a fresh clone\n\n"
            f"Commit {r['commit']} cloned into an empty folder, `../shared` {'beside it' if r['shared_data'] else 'absent'}, "
            f"no .venv: `make repro` creates the environment, installs dxlab and runs every stage "
            f"({len(r['stages_run'])} stages ran). Produced by `bench/fresh_repro.py`; {r['machine']}; load average "
            f"at the end {r['load_average_end'][0]}.\n\n"
            f"| exit code | wall time | of which installation | target | verdict |\n|---|---|---|---|---|\n"
            f"| {r['exit_code']} | {r['seconds'] / 60:.1f} min | {install} | under {r['target_seconds'] // 60} min | "
            f"{verdict} |\n")


if __name__ == "__main__":
    sys.exit(main())
