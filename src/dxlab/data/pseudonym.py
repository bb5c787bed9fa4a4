"""Keyed-hash pseudonyms for patient ids: stable for one key, meaningless without it.

One key, one place: `$DXLAB_PSEUDONYM_KEY` (the key itself) when set, else the file `key_file(cfg)` names (next to
`paths.interim`: `data/.pseudonym_key`), a relative path taken from the project root (the folder holding
`params.yaml` or `dvc.yaml`), never from the working directory. Only the ingest stage -- the first run of the
pipeline -- creates the file; every production command (`dxlab predict`, `monitor`, `serve`) fails without it, as a
new key would give every patient a new pseudonym.

Nothing after ingest may depend on the key's value: a clone with another key must train and measure the same. So
a row's cross-validation group is not a pseudonym but a key-independent label (`group_labels`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, MutableMapping
from pathlib import Path

KEY_ENV = "DXLAB_PSEUDONYM_KEY"
ROOT_ENV = "DXLAB_ROOT"
KEY_FILE_NAME = ".pseudonym_key"
ROOT_MARKERS = ("params.yaml", "dvc.yaml")


class MissingKeyError(FileNotFoundError):
    """No pseudonymisation key: neither the variable nor the key file."""


def key_file(cfg) -> Path:
    """Where the project keeps its key: `.pseudonym_key` in the folder above `paths.interim` (data/)."""
    return Path(cfg.paths.interim).parent / KEY_FILE_NAME


def find_project_root(start: str | Path | None = None) -> Path | None:
    """`$DXLAB_ROOT`, else the nearest folder at or above `start` (default: the working directory, then the
    installed package's own checkout) holding params.yaml or dvc.yaml; None when there is none."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).resolve()
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).parent]
    for here in starts:
        here = here.resolve()
        for folder in (here, *here.parents):
            if any((folder / marker).exists() for marker in ROOT_MARKERS):
                return folder
    return None


def resolve_key_path(key_path: str | Path) -> Path:
    """An absolute key path as it is; a relative one from the project root (never the working directory)."""
    path = Path(key_path).expanduser()
    if path.is_absolute():
        return path
    root = find_project_root()
    if root is None:
        raise MissingKeyError(
            f"cannot place the pseudonymisation key {path}: no project root (a folder with params.yaml or "
            f"dvc.yaml) at or above {Path.cwd()}; set {ROOT_ENV} to the project folder or {KEY_ENV} to the key")
    return root / path


def load_key(key_file: str | Path, create: bool = False) -> bytes:
    """The key from $DXLAB_PSEUDONYM_KEY, else from `key_file` (relative: from the project root).

    A missing file is an error unless `create` (the ingest stage alone: the pipeline's first run), which writes a
    random key readable by its owner only."""
    if env := os.environ.get(KEY_ENV):
        return env.encode()
    path = resolve_key_path(key_file)
    if not path.exists():
        if not create:
            raise MissingKeyError(
                f"no pseudonymisation key: {path} does not exist and {KEY_ENV} is not set. Set {KEY_ENV} to the "
                f"key the training data was pseudonymised with (e.g. export {KEY_ENV}=$(cat "
                f"<project>/data/{KEY_FILE_NAME})), or run the pipeline's ingest stage once (`dvc repro ingest`), "
                f"which creates {path}. A new key would give every patient a new pseudonym.")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
            f.flush()
            os.fsync(f.fileno())
    key = path.read_text().strip()
    if not key:
        raise MissingKeyError(f"the pseudonymisation key file {path} is empty: restore it, or set {KEY_ENV}")
    return key.encode()


def pseudonymise(raw_id: str, key: bytes, source: str = "") -> str:
    """'px-' + 16 hex chars of HMAC-SHA256(key, source:raw_id); the same patient keeps the same pseudonym."""
    if not raw_id:
        return ""
    digest = hmac.new(key, f"{source}:{raw_id}".encode(), hashlib.sha256).hexdigest()
    return f"px-{digest[:16]}"


PUBLICATION = re.compile(r"PMID:\d+")


def group_labels(raw_groups: Iterable[str], raw_ids: Iterable[str], files: Iterable[str], rows: Iterable[int],
                 source: str = "", first_seen: MutableMapping[tuple[str, str], str] | None = None) -> list[str]:
    """A row's group for cross-validation (the unit folds never split), independent of the key.

    A publication id ('PMID:123') stays as it is (bibliographic, never a patient's). Any other group -- a family, a
    hospital's patient number across visits, or, with none, the row's own patient -- is named after the place of
    its first row, '<source>/<file>#<row>': rows of one group share the label, no raw value and no pseudonym is
    kept, and two clones with different keys fold the same rows together in the same order. `first_seen` carries
    the labels over the files of one source."""
    first_seen = {} if first_seen is None else first_seen
    labels = []
    for group, raw_id, file, row in zip(raw_groups, raw_ids, files, rows):
        group = (group or "").strip()
        if PUBLICATION.fullmatch(group):
            labels.append(group)
            continue
        place = f"{source}/{file}#{int(row)}"
        unit = ("group", group) if group else ("patient", str(raw_id or "").strip())
        if not unit[1]:  # no id at all: the row is its own group (and validate quarantines it)
            labels.append(place)
            continue
        labels.append(first_seen.setdefault(unit, place))
    return labels
