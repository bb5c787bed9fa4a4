"""Stage `manuscript`: reports/manuscript.pdf, the report a review committee reads, built offline from the reports the
other stages wrote (every number read from them; a missing one is named in its section, never fatal). The layout is
`dxlab.evaluation.manuscript`; the PDF is invariant, so the same reports give the same bytes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.config import project_root
from dxlab.evaluation.manuscript import build_manuscript
from dxlab.stages._runner import main_for
from dxlab.tracking.mlflow_tracking import log_artifact


def run(cfg: DictConfig) -> dict:
    reports = Path(cfg.paths.reports)
    built = build_manuscript(reports, reports / "manuscript.pdf", bench_dir=project_root() / "bench",
                             strata=OmegaConf.to_container(cfg.evaluate.strata),
                             calibration_bins=int(cfg.evaluate.calibration_bins), model_name=str(cfg.model.name))
    log_artifact(built["path"], "manuscript")
    missing = sorted(name for name, status in built["inputs"].items() if status != "read")
    print(f"{built['path']}: {built['pages']} pages" + (f"; not read: {', '.join(missing)}" if missing else "")
          + (f"; sections not built: {', '.join(built['sections_failed'])}" if built["sections_failed"] else ""))
    return {"pages": built["pages"], "inputs_read": len(built["inputs"]) - len(missing),
            "inputs_missing": len(missing), "sections_failed": len(built["sections_failed"])}


def main() -> None:
    main_for("manuscript", run)


if __name__ == "__main__":
    main()
