"""A model bundle: the approved champion and everything serving it needs, in one folder a container can carry.

    dxlab bundle --out build/image/bundle        # from the registry's champion (serve.model)

    bundle/
      bundle.json        what it is: model name, registry version and alias, knowledge version, file digests
      model.joblib       the champion's fitted model (the registry artifact, byte for byte)
      knowledge/         the knowledge tables the API reads (names, the autocomplete vocabulary, the note reader)
      detector.joblib    the anomaly stage's detector (when the project has one)
      reference.json     the monitor's training reference (the API's drift gauges; when the project has one)

`resolve_model` loads a bundle folder like a registry model: its version is the registry version it was exported
from, so the API's answers and /readyz name the same version as the registry. Exporting never falls back to a
local file: a registry that cannot give the champion is an error (the approval gate decides what is served).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

BUNDLE_FILE = "bundle.json"
MODEL_FILE = "model.joblib"
KNOWLEDGE_TABLES = ("terms", "aliases", "annotations", "diseases")


def is_bundle(spec) -> bool:
    return Path(str(spec)).is_dir() and (Path(str(spec)) / BUNDLE_FILE).exists()


def read_bundle(folder: str | Path) -> dict:
    return json.loads((Path(folder) / BUNDLE_FILE).read_text())


def export_bundle(cfg, out: str | Path, model: str | None = None) -> dict:
    """Write the bundle of `model` (default serve.model, the registry's champion) into `out` (replaced)."""
    from dxlab.serving.batch import file_digest
    from dxlab.serving.scorer import is_registry_uri, parse_registry_uri, registry_model_file
    from dxlab.tracking.mlflow_tracking import tracking_uri

    spec = str(model or cfg.serve.model)
    if not is_registry_uri(spec):
        raise ValueError(f"a bundle carries a registered model (models:/NAME@ALIAS or models:/NAME/VERSION), not "
                         f"{spec!r}")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source, version, model_name = registry_model_file(spec, tracking_uri(cfg))
    shutil.copyfile(source, out / MODEL_FILE)
    import joblib

    fitted = joblib.load(out / MODEL_FILE)
    files = {MODEL_FILE: file_digest(out / MODEL_FILE)}
    knowledge = Path(cfg.paths.knowledge)
    (out / "knowledge").mkdir()
    for name in KNOWLEDGE_TABLES:
        table = knowledge / f"{name}.parquet"
        if not table.exists():
            raise FileNotFoundError(f"knowledge table {table} missing: run the knowledge stage (dvc repro knowledge)")
        shutil.copyfile(table, out / "knowledge" / table.name)
        files[f"knowledge/{table.name}"] = file_digest(out / "knowledge" / table.name)
    optional = {"detector.joblib": cfg.serve.get("anomaly_detector"), "reference.json": cfg.monitor.get("reference")}
    for target, path in optional.items():
        if path and Path(path).exists():
            shutil.copyfile(path, out / target)
            files[target] = file_digest(out / target)
    name, alias, _ = parse_registry_uri(spec)
    info = {"model": model_name, "registered_model": name, "version": str(version), "alias": alias,
            "source": spec, "knowledge_version": str(getattr(fitted, "knowledge_version_", "")),
            "n_classes": int(len(fitted.classes_)), "files": files}
    (out / BUNDLE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info
