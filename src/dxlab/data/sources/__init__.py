"""Source adapters (one per input format) and the data config's list of labelled sources.

`data.sources` names every labelled source of the run; each entry has its adapter (`source`, a `_target_` of this
package) and how its rows are handled: `labelled` (a missing diagnosis is a bad row), `require_known_diagnosis`
(the diagnosis must be a disease the knowledge annotates), `evaluation` (`holdout`: a stratified test split;
`grouped`: every row trains and folds grouped by `group_id` evaluate), `required` (a missing file stops the
run, or the run goes on without the source and says so) and `notes.mode` (how the rows' clinical notes are read:
merge | replace | ignore, see `dxlab.data.notes`; default merge). `data.feed` names the source whose files the production
path reads (batch prediction, monitoring, retraining).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EVALUATIONS = ("holdout", "grouped")


@dataclass
class SourceSpec:
    name: str
    adapter: object
    labelled: bool = True
    require_known_diagnosis: bool = True
    evaluation: str = "holdout"
    required: bool = True
    notes: str = "merge"  # how the `note` column is read (dxlab.data.notes.NOTE_MODES)

    def available(self) -> tuple[bool, str]:
        """(files found, why not); an adapter whose path is missing raises FileNotFoundError on files()."""
        try:
            files = self.adapter.files()
        except FileNotFoundError as err:
            return False, str(err)
        return (True, "") if files else (False, f"no input files under {getattr(self.adapter, 'path', '?')}")


def source_specs(cfg) -> list[SourceSpec]:
    """The configured sources, adapters instantiated, in config order."""
    from hydra.utils import instantiate

    from dxlab.data.notes import source_note_mode

    specs = []
    for name, entry in cfg.data.sources.items():
        evaluation = str(entry.get("evaluation", "holdout"))
        if evaluation not in EVALUATIONS:
            raise ValueError(f"data.sources.{name}.evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
        adapter = instantiate(entry.source, _convert_="all")  # plain dicts: OmegaConf look-ups per row are slow
        adapter.name = str(name)  # rows carry the config's name of their source
        specs.append(SourceSpec(str(name), adapter, bool(entry.get("labelled", True)),
                                bool(entry.get("require_known_diagnosis", True)), evaluation,
                                bool(entry.get("required", True)), source_note_mode(entry)))
    return specs


def feed_source(cfg, path: str | Path | None = None):
    """The adapter of `data.feed` (the production feed), reading `path` instead of its own when given."""
    from hydra.utils import instantiate

    name = cfg.data.get("feed") or next(iter(cfg.data.sources))
    if name not in cfg.data.sources:
        raise ValueError(f"data.feed {name!r} is not among data.sources {list(cfg.data.sources)}")
    adapter = instantiate(cfg.data.sources[name].source, _convert_="all")
    adapter.name = str(name)
    if path is not None:
        adapter.path = Path(path) if isinstance(adapter.path, Path) else str(path)
    return adapter


def feed_settings(cfg):
    """The config node of the feed source (its adapter settings under `.source`)."""
    name = cfg.data.get("feed") or next(iter(cfg.data.sources))
    return cfg.data.sources[name]
