"""Stage `simulate`: write the embedded default cohort as daily CSV exports under data/raw/ (hpo_cohort only)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.knowledge.base import Knowledge
from dxlab.simulate.cohort import SimulatorConfig, simulate_patients, write_daily_files
from dxlab.stages._runner import main_for, write_json


def run(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.raw) / "hpo_cohort"
    if "simulator" not in cfg.data:  # another source: nothing to simulate, keep the stage's output defined
        out.mkdir(parents=True, exist_ok=True)
        write_json({"simulated": False}, Path(cfg.paths.reports) / "stages" / "simulate.json")
        return {"n_patients": 0}
    sim = OmegaConf.to_container(cfg.data.simulator, resolve=True)
    sim["seed"] = cfg.seed
    sim = SimulatorConfig(**{**sim, "databases": tuple(sim["databases"]), "default_age_range": tuple(sim["default_age_range"]),
                             "onset_age_ranges": {k: tuple(v) for k, v in sim["onset_age_ranges"].items()}})
    cohort = simulate_patients(Knowledge.load(cfg.paths.knowledge), sim)
    files = write_daily_files(cohort, out)
    cohort.panel.to_csv(out / "panel.csv", index=False)
    counts = cohort.panel["target_patients"]
    metrics = {"n_patients": int(len(cohort.patients)), "n_diseases": int(len(cohort.panel)), "n_files": len(files),
               "max_patients_per_disease": int(counts.max()), "diseases_under_10_patients": int((counts < 10).sum()),
               "n_injected_bad_rows": int((cohort.patients["defect"] != "").sum())}
    write_json({"simulated": True, **metrics}, Path(cfg.paths.reports) / "stages" / "simulate.json")
    return metrics


def main() -> None:
    main_for("simulate", run)


if __name__ == "__main__":
    main()
