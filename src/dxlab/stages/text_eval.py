"""Stage `text_eval`: concept recognition scored on the shared annotated corpora, cross-validated by document --
`dxlab.text.evaluate.run` (what `make text-eval` runs) on the `text` group of params.yaml; writes
reports/text/{metrics.json,report.md,speed_memory.json}. Without the corpora (../shared/data/text) it writes that it
scored nothing and succeeds."""

from __future__ import annotations

from omegaconf import DictConfig

from dxlab.stages._runner import main_for
from dxlab.text.evaluate import headline
from dxlab.text.evaluate import run as evaluate_text


def run(cfg: DictConfig) -> dict:
    return headline(evaluate_text(cfg.text))


def main() -> None:
    main_for("text_eval", run)


if __name__ == "__main__":
    main()
