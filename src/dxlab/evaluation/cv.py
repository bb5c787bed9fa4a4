"""Stratified k-fold cross-validation of a whole model pipeline, with out-of-fold predictions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from dxlab.evaluation.metrics import evaluate_predictions


@dataclass
class CVResult:
    folds: list[dict]  # evaluate_predictions output per fold
    oof: pd.DataFrame  # out-of-fold probabilities, rows = validated patients, columns = diseases
    report: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Mean and standard deviation of every metric over folds, by stratum."""
        out: dict = {}
        for stratum in self.folds[0]:
            out[stratum] = {}
            for metric in self.folds[0][stratum]:
                values = [f[stratum][metric] for f in self.folds if f[stratum].get(metric) is not None]
                if values and all(isinstance(v, (int, float)) for v in values):
                    out[stratum][f"{metric}_mean"] = float(np.mean(values))
                    out[stratum][f"{metric}_std"] = float(np.std(values))
        return out


def fold_indices(y: Sequence[str], n_splits: int, seed: int, shuffle: bool = True):
    """Stratified folds over the diseases with >= n_splits patients; the others train in every fold."""
    y = pd.Series(np.asarray(y, dtype=str))
    counts = y.value_counts()
    always_train = sorted(counts[counts < n_splits].index)
    pinned = np.flatnonzero(y.isin(always_train).to_numpy())
    rest = np.flatnonzero(~y.isin(always_train).to_numpy())
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=shuffle, random_state=seed if shuffle else None)
    folds = []
    for train_pos, val_pos in splitter.split(rest, y.iloc[rest]):
        folds.append((np.sort(np.concatenate([rest[train_pos], pinned])), rest[val_pos]))
    return folds, always_train


def cross_validate(build: Callable[[], object], patients: pd.DataFrame, y: Sequence[str], n_splits: int = 5,
                   seed: int = 0, shuffle: bool = True, thresholds: Mapping[str, int] | None = None,
                   ks: Sequence[int] = (1, 3, 10), on_fold: Callable[[int, dict], None] | None = None) -> CVResult:
    """Fit a fresh pipeline from `build()` on each training fold (samplers included, so synthetic rows only
    ever join training folds) and score the validation fold."""
    y = np.asarray(y, dtype=str)
    folds, always_train = fold_indices(y, n_splits, seed, shuffle)
    classes = np.asarray(sorted(set(y)), dtype=object)
    oof = np.full((len(y), len(classes)), np.nan, dtype=np.float32)
    results = []
    for k, (train_idx, val_idx) in enumerate(folds):
        model = build()
        model.fit(patients.iloc[train_idx].reset_index(drop=True), y[train_idx])
        proba = model.predict_proba(patients.iloc[val_idx].reset_index(drop=True))
        model_classes = np.asarray(model.classes_).astype(str)
        aligned = np.zeros((len(val_idx), len(classes)), dtype=np.float32)
        position = {c: i for i, c in enumerate(classes)}
        for j, c in enumerate(model_classes):
            aligned[:, position[c]] = proba[:, j]
        oof[val_idx] = aligned
        counts = pd.Series(y[train_idx]).value_counts().to_dict()
        result = evaluate_predictions(y[val_idx], proba, model_classes, counts, thresholds, ks=ks)
        results.append(result)
        if on_fold:
            on_fold(k, result)
    validated = np.flatnonzero(~np.isnan(oof[:, 0]))
    oof_frame = pd.DataFrame(oof[validated], columns=classes)
    oof_frame.insert(0, "row", validated)
    oof_frame.insert(1, "diagnosis", y[validated])
    report = {"n_splits": n_splits, "n_patients": int(len(y)), "n_validated": int(len(validated)),
              "diseases_never_validated": always_train,
              "n_diseases_never_validated": len(always_train)}
    return CVResult(results, oof_frame, report)


def grouped_folds(y: Sequence[str], groups: Sequence[str], n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Fold (0 .. n_splits - 1) of every row: StratifiedGroupKFold, so all rows of a group (a publication, a
    patient) share one fold and no group is ever on both sides of a split; fewer folds when there are fewer
    groups."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y, dtype=str)
    groups = np.asarray(groups, dtype=object).astype(str)
    n_splits = min(int(n_splits), len(np.unique(groups)))
    fold = np.full(len(y), -1, dtype=int)
    if n_splits < 2:
        return np.zeros(len(y), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():  # most diseases have fewer rows than folds: expected, not news
            warnings.simplefilter("ignore", UserWarning)
            for k, (_, val) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
                fold[val] = k
    except ValueError:  # no disease has as many rows as folds: nothing to stratify, groups dealt out at random
        unique = np.unique(groups)
        order = np.random.default_rng(seed).permutation(len(unique))
        fold_of = dict(zip(unique[order], np.arange(len(unique)) % n_splits))
        fold = np.asarray([fold_of[g] for g in groups], dtype=int)
    return fold


def grouped_cross_validation(build: Callable[[], object], train: pd.DataFrame, lines: Sequence[str],
                             train_sources: Sequence[str] | None = None, n_splits: int = 5, seed: int = 0,
                             thresholds: Mapping[str, int] | None = None, n_bins: int = 15,
                             on_fold: Callable[[int, dict], None] | None = None) -> dict:
    """Refit a fresh model from `build()` per grouped fold of the rows of each source in `lines` (the real case
    reports: folds by publication, no group on both sides) on every other training row of its `train_sources`, and
    score the fold's rows: line -> case_metrics of the out-of-fold rows. What the sweep's verdict on real patients
    reads (the diagnostic model gets the same figures in one fit by leaving the group out; a model of the zoo needs
    the refits)."""
    from dxlab.evaluation.cases import case_metrics, case_table
    from dxlab.models.build import takes_groups

    usable = train if train_sources is None else train[train["source"].isin(list(train_sources))]
    out = {}
    for line in lines:
        rows = train["source"].to_numpy() == line
        if not rows.any():
            continue
        fold = np.full(len(train), -1)
        fold[rows] = grouped_folds(train.loc[rows, "diagnosis"], train.loc[rows, "group_id"], n_splits, seed)
        frames = []
        for k in sorted(set(fold[rows].tolist())):
            held = fold == k
            fit_rows = usable[~held[usable.index]].reset_index(drop=True)
            model = build()
            y = fit_rows["diagnosis"].astype(str).to_numpy()
            if takes_groups(model):
                model.fit(fit_rows, y, groups=fit_rows["group_id"].astype(str).to_numpy())
            else:
                model.fit(fit_rows, y)
            counts = None if hasattr(model, "core_") else pd.Series(y).value_counts().to_dict()
            frame = case_table(model, train[held].reset_index(drop=True), train_counts=counts, thresholds=thresholds)
            frames.append(frame)
            if on_fold:
                on_fold(k, case_metrics(frame, n_bins)["overall"])
        out[line] = case_metrics(pd.concat(frames, ignore_index=True), n_bins)
        out[line]["cv"] = {"kind": "grouped", "n_splits": len(frames), "n_cases": int(rows.sum()),
                           "n_groups": int(train.loc[rows, "group_id"].nunique())}
    return out
