"""Stage `knowledge`: parse the HPO releases listed in `knowledge.sources`, merged, into parquet tables."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dxlab.knowledge.base import build_knowledge_report, knowledge_metrics, write_knowledge
from dxlab.stages._runner import main_for, write_json


def run(cfg: DictConfig) -> dict:
    k = cfg.knowledge
    sources = [instantiate(source) for source in k.sources]
    tables, merge_report = build_knowledge_report(sources, k.default_frequency,
                                                  OmegaConf.to_container(k.frequency_categories), list(k.databases))
    write_knowledge(tables, Path(cfg.paths.knowledge))
    metrics = knowledge_metrics(tables, merge_report, k.default_frequency)
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "knowledge.json")
    return metrics


def main() -> None:
    main_for("knowledge", run)


if __name__ == "__main__":
    main()
