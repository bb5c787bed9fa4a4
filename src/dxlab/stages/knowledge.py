"""Stage `knowledge`: parse the HPO ontology and disease annotations into parquet tables."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.knowledge.base import build_knowledge, write_knowledge
from dxlab.stages._runner import main_for, write_json


def run(cfg: DictConfig) -> dict:
    k = cfg.knowledge
    tables = build_knowledge(k.hpo_dir, k.default_frequency, OmegaConf.to_container(k.frequency_categories),
                             list(k.databases))
    out = Path(cfg.paths.knowledge)
    write_knowledge(tables, out)
    ann = tables["annotations"]
    metrics = {"n_terms": len(tables["terms"]), "n_diseases": len(tables["diseases"]),
               "n_annotations": len(ann), "n_negated_annotations": int(ann["negated"].sum()),
               "share_annotations_with_frequency": float(ann["frequency_known"].mean())}
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "knowledge.json")
    return metrics


def main() -> None:
    main_for("knowledge", run)


if __name__ == "__main__":
    main()
