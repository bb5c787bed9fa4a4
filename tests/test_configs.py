"""Every config file composes; params.yaml is the composed default, never edited by hand."""

from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class
from omegaconf import OmegaConf

from dxlab.config import compose

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUP_OPTIONS = [(group.name, option.stem) for group in sorted(CONF.iterdir()) if group.is_dir()
                 for option in sorted(group.glob("*.yaml"))]


def test_there_are_config_groups():
    groups = {g for g, _ in GROUP_OPTIONS}
    assert {"data", "features", "model", "knowledge", "validate", "split", "evaluate", "tracking", "debug"} <= groups


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_composes_and_resolves(group, option):
    cfg = compose([f"{group}={option}"], config_dir=CONF)
    container = OmegaConf.to_container(cfg, resolve=True)
    for node in _targets(container):
        assert callable(get_class(node["_target_"])), node["_target_"]


def test_model_configs_can_be_the_baseline_too():
    for option in sorted(p.stem for p in (CONF / "model").glob("*.yaml")):
        cfg = compose([f"model@baseline={option}"], config_dir=CONF)
        assert cfg.baseline.name == option


def test_params_yaml_is_the_composed_default():
    params = yaml.safe_load((CONF.parent / "params.yaml").read_text())
    composed = OmegaConf.to_container(compose([], config_dir=CONF), resolve=False)
    assert params == composed, "params.yaml differs from conf/: run `make params` (never edit it by hand)"


def test_dvc_stages_match_stage_modules():
    import importlib

    stages = yaml.safe_load((CONF.parent / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m dxlab.stages.{name}", name
        module = importlib.import_module(f"dxlab.stages.{name}")
        assert callable(module.run) and callable(module.main)
        for key in stage.get("params", []):
            assert OmegaConf.select(compose([], config_dir=CONF), key) is not None, f"{name}: param {key}"


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)
