"""Keyed-hash pseudonyms for patient ids: stable for one key, meaningless without it."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

KEY_ENV = "DXLAB_PSEUDONYM_KEY"


def load_key(key_file: str | Path) -> bytes:
    """The key from $DXLAB_PSEUDONYM_KEY, else from key_file, created with a random key on first use."""
    if env := os.environ.get(KEY_ENV):
        return env.encode()
    path = Path(key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def pseudonymise(raw_id: str, key: bytes, source: str = "") -> str:
    """'px-' + 16 hex chars of HMAC-SHA256(key, source:raw_id); the same patient keeps the same pseudonym."""
    if not raw_id:
        return ""
    digest = hmac.new(key, f"{source}:{raw_id}".encode(), hashlib.sha256).hexdigest()
    return f"px-{digest[:16]}"


PUBLICATION = re.compile(r"PMID:\d+")


def pseudonymise_group(group: str, patient_pseudonym: str, key: bytes, source: str = "") -> str:
    """A row's group for cross-validation: a publication id ('PMID:123') as it is (bibliographic, never a
    patient's); no group: the row's own patient (its pseudonym); anything else (a family, a hospital's patient
    number across visits) pseudonymised like a patient id."""
    group = (group or "").strip()
    if not group:
        return patient_pseudonym
    if PUBLICATION.fullmatch(group):
        return group
    return pseudonymise(group, key, f"{source}:group")
