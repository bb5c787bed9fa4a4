"""Configuration: `conf/` (Hydra groups) is the source of truth, `params.yaml` its composed default.

Stage entry points read `params.yaml` (what DVC tracks and `dvc exp run -S` rewrites) and accept dotted
overrides (`model.estimator.C=0.5`); the sweep entry point composes `conf/` with Hydra directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

PARAMS_FILE = "params.yaml"


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder upwards holding `conf/` and `dvc.yaml` (or `DXLAB_ROOT` when set)."""
    if env := os.environ.get("DXLAB_ROOT"):
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf").is_dir() and (folder / "dvc.yaml").exists():
            return folder
    raise FileNotFoundError(f"no dxlab project (a folder with conf/ and dvc.yaml) at or above {here}")


def compose(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides (`model=logreg`, `data.simulator.n_diseases=20`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = Path(config_dir or project_root() / "conf").resolve()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def write_params(cfg: DictConfig, path: str | Path) -> None:
    """Write a composed config the way DVC's Hydra composition does (plain YAML, interpolations kept)."""
    data = OmegaConf.to_container(cfg, resolve=False)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def load_params(overrides: Sequence[str] = (), path: str | Path | None = None) -> DictConfig:
    """Load params.yaml and apply dotted overrides (`key.sub=value`)."""
    path = Path(path) if path else project_root() / PARAMS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `make params` to compose it from conf/")
    cfg = OmegaConf.load(path)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must look like key=value, got {bad}")
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return cfg


def flatten(cfg, prefix: str = "", sep: str = ".") -> dict[str, object]:
    """Nested config/metrics -> flat {'a.b.c': value} for MLflow."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, object] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}{sep}", sep))
    else:
        out[prefix.rstrip(sep)] = data
    return out
