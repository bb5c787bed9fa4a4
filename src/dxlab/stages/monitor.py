"""Stage `monitor`: drift of the newest day (the one `predict` scored) against the training reference."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from dxlab.monitor.batch import monitor_from_config
from dxlab.stages._runner import main_for, write_json

log = logging.getLogger(__name__)


class DriftDetected(RuntimeError):
    """The batch drifted and monitor.fail_on_drift is set."""


def run(cfg: DictConfig) -> dict:
    report = monitor_from_config(cfg, newest_days=int(cfg.monitor.newest_days))
    s = report["summary"]
    headline = {"batch": report["batch"], "n_patients": report["n_patients"], "drift": int(s["drift"]),
                "n_drifted": s["n_drifted"], "drifted": s["drifted_inputs"] + s["drifted_predictions"],
                "performance_degraded": int(s["performance_degraded"])}
    write_json(headline, Path(cfg.paths.reports) / "stages" / "monitor.json")
    if s["drift"] and cfg.monitor.fail_on_drift:
        raise DriftDetected(f"drift in {headline['drifted']}: see {cfg.monitor.out}/report.html")
    return {k: v for k, v in headline.items() if isinstance(v, (int, float))}


def main() -> None:
    main_for("monitor", run)


if __name__ == "__main__":
    main()
