"""Cleaning and splitting of the validated canonical table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split


def normalise_terms(table: pd.DataFrame, normalise: Callable[[str], str | None]) -> pd.DataFrame:
    """Map alt/obsolete ids to live terms and drop repeats within a patient (order kept)."""
    out = table.copy()
    for col in ("findings", "excluded"):
        out[col] = [list(dict.fromkeys(n for t in terms if (n := normalise(t)) is not None)) for terms in out[col]]
    return out


def stratified_split(table: pd.DataFrame, test_size: float, seed: int, min_patients_for_test: int = 2
                     ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Stratified train/test split by diagnosis.

    A disease with fewer than `min_patients_for_test` patients cannot be in both parts: all its patients go to
    training and the report lists it, so nothing disappears silently.
    """
    counts = table["diagnosis"].value_counts()
    too_few = sorted(counts[counts < max(min_patients_for_test, 2)].index)
    splittable = table[~table["diagnosis"].isin(too_few)]
    # Every class needs one test patient at least: raise the test share when classes outnumber test slots.
    n_classes = splittable["diagnosis"].nunique()
    n_test = max(int(round(test_size * len(splittable))), n_classes)
    train, test = train_test_split(splittable, test_size=n_test, stratify=splittable["diagnosis"],
                                   random_state=seed)
    train = pd.concat([train, table[table["diagnosis"].isin(too_few)]])
    report = {"n_train": int(len(train)), "n_test": int(len(test)), "n_diseases": int(counts.size),
              "n_diseases_in_test": int(test["diagnosis"].nunique()),
              "diseases_train_only": too_few, "test_size": float(len(test) / max(len(table), 1))}
    return train.reset_index(drop=True), test.reset_index(drop=True), report


def coerce_patients(frame: pd.DataFrame, list_separator: str = ";") -> pd.DataFrame:
    """Accept patients from an API or a pyfunc call: list columns as lists or 'a;b' strings, absent columns."""
    out = frame.copy()
    for col in ("findings", "excluded", "history"):
        if col not in out:
            out[col] = [[] for _ in range(len(out))]
        out[col] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else
                    ([s.strip() for s in str(v).split(list_separator) if s.strip()] if v is not None and v == v else [])
                    for v in out[col]]
    for col, default in (("age", np.nan), ("family_history", np.nan)):
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out else default
    if "sex" not in out:
        out["sex"] = None
    out["sex"] = [s if s in ("F", "M") else None for s in out["sex"]]
    if "measurements" not in out:
        out["measurements"] = [{} for _ in range(len(out))]
    out["measurements"] = [m if isinstance(m, dict) else {} for m in out["measurements"]]
    return out
