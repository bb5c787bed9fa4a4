"""A deliberately shifted day, to see the monitor fire: `python -m dxlab.monitor.shift IN.csv OUT.csv [kinds]`.

Works on a raw daily export of the simulator (its column names): older patients, mostly one sex, fewer recorded
findings, and a case mix narrowed to a few diseases (their findings, their predictions).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("age", "sex", "findings", "case_mix")


def shift_day(raw: pd.DataFrame, kinds: Sequence[str] = KINDS, seed: int = 0, age_shift: float = 40.0) -> pd.DataFrame:
    """A copy of one day's raw rows with the chosen shifts applied (see KINDS)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown shift kinds {sorted(unknown)}; choose from {KINDS}")
    rng = np.random.default_rng(seed)
    out = raw.copy()
    if "case_mix" in kinds and "diagnosis" in out:
        top = out["diagnosis"].value_counts().index[:3]
        pool = out[out["diagnosis"].isin(top)]
        out = pool.sample(n=len(out), replace=True, random_state=seed).reset_index(drop=True)
        out["patient_id"] = [f"SHIFT{i:06d}" for i in range(len(out))]
    if "age" in kinds:
        age = pd.to_numeric(out["age"], errors="coerce")
        out["age"] = (age + age_shift).clip(upper=119).round(1)
    if "sex" in kinds:
        out["sex"] = np.where(rng.random(len(out)) < 0.95, "M", "F")
    if "findings" in kinds:
        def thin(text) -> str:
            items = [t for t in str(text or "").split(";") if t]
            return ";".join(items[: max(1, len(items) // 3)])

        out["findings"] = [thin(t) for t in out["findings"]]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", help="a raw daily CSV (data/raw/hpo_cohort/patients_YYYY-MM-DD.csv)")
    parser.add_argument("target", help="where to write the shifted day")
    parser.add_argument("kinds", nargs="*", default=list(KINDS), help=f"any of {KINDS} (default all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    raw = pd.read_csv(args.source, dtype=str, keep_default_na=False)
    Path(args.target).parent.mkdir(parents=True, exist_ok=True)
    shift_day(raw, args.kinds, args.seed).to_csv(args.target, index=False)
    print(f"wrote {args.target}: {len(raw)} rows shifted by {', '.join(args.kinds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
