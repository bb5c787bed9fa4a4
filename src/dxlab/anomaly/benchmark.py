"""`dxlab anomaly-benchmark --data-dir DIR --out OUT`: every detector on every labelled ``.npz`` table in DIR.

Each file holds ``X`` (rows x features) and ``y`` (1 = anomaly), as ADBench ships them. Per file and seed: a
stratified 70/30 split, each detector fitted on the training part *without* labels and scored on the test part;
ROC-AUC and PR-AUC (average precision), averaged over the seeds. ``auto`` is dxlab's recommended detector, fixed
in ``conf/anomaly/default.yaml`` before looking at any test label, and applied unchanged to every file.

Outputs in OUT: ``results.json`` ({dataset: {detector: {"roc_auc", "pr_auc"}}} plus a ``mean`` entry),
``results.md`` (tables beside ADBench's published figures), ``details.json`` (per-seed values, spread, timings,
dataset shapes), ``explanations/<dataset>.csv`` (the top test anomalies of ``auto``, feature by feature) and
``figures/anomaly_<dataset>_{pca,tsne}.png``.

Protocols: ``clean`` (default) splits the file as it is. ``adbench`` replays ADBench's data generator, random
stream included, for a like-for-like comparison with its published numbers: with NumPy's legacy generator seeded
with the seed (ADBench's seeds are 1, 2, 3), files under 1,000 rows are resampled *with replacement* to 1,000 rows
and files over 10,000 rows subsampled to 10,000 (the generator re-seeded before either), the same stream then
shuffles the stratified split, and the parts are min-max scaled on the training part. A detector seeded with the
same seed then draws what ADBench's did: the Isolation Forest reproduces the published figures to the decimal on
the shared files, so every other detector is compared on the very splits behind them. The resampling puts copies
of the same row on both sides of the split, which flatters some detectors on small files; that is why ``clean`` is
the default.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from dxlab.anomaly.detectors import EnsembleDetector, make_detector, with_seed

log = logging.getLogger(__name__)
PROTOCOLS = ("clean", "adbench")
ADBENCH_MIN_ROWS, ADBENCH_MAX_ROWS = 1000, 10000
ADBENCH_SEEDS = (1, 2, 3)  # the seeds behind ADBench's published figures


@dataclass
class Dataset:
    name: str
    path: Path
    X: np.ndarray
    y: np.ndarray

    @property
    def key(self) -> str:
        return dataset_key(self.name)


def dataset_key(name: str) -> str:
    """'2_annthyroid' -> 'annthyroid': how published figures are keyed."""
    head, _, tail = name.partition("_")
    return (tail if head.isdigit() and tail else name).lower()


# -- loading and checking ----------------------------------------------------------------------------------
def load_dataset(path: str | Path, min_per_class: int = 2) -> Dataset:
    """Read and check one ``.npz`` file; every problem is a ValueError naming the file and what is wrong."""
    import zipfile

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ValueError(f"{where}: file not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{where}: not a readable .npz file (not a zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as err:  # object arrays need pickle, which we never load from data files
        raise ValueError(f"{where}: cannot read it as plain numeric arrays ({err})") from None
    except Exception as err:  # zipfile / format errors
        raise ValueError(f"{where}: not a readable .npz file ({type(err).__name__}: {err})") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise ValueError(f"{where}: no array '{key}' (found {sorted(arrays) or 'none'}); "
                             "expected X (rows x features) and y (1 = anomaly)")
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2:
        raise ValueError(f"{where}: X must be 2-D (rows x features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where}: X is empty (shape {X.shape})")
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be 1-D (one label per row), got shape {y.shape}")
    if len(y) != len(X):
        raise ValueError(f"{where}: X has {len(X)} rows but y has {len(y)} labels")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{where}: X must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{where}: X contains {int(np.isnan(X).sum())} NaN and {int(np.isinf(X).sum())} infinite "
                         f"values in {len(rows)} rows (first rows {rows[:5].tolist()}); impute or drop them first")
    try:
        labels = y.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: y must hold 0/1 labels, got dtype {y.dtype}") from None
    values = set(np.unique(labels[np.isfinite(labels)]).tolist())
    if not np.isfinite(labels).all() or not values <= {0.0, 1.0}:
        shown = sorted(values - {0.0, 1.0})[:5] or ["NaN"]
        raise ValueError(f"{where}: y must hold only 0 (normal) and 1 (anomaly), found {shown}")
    y = labels.astype(int)
    n_anomalies, n_normal = int(y.sum()), int(len(y) - y.sum())
    if min(n_anomalies, n_normal) < min_per_class:
        raise ValueError(f"{where}: a stratified split needs at least {min_per_class} anomalies and {min_per_class} "
                         f"normal rows, found {n_anomalies} anomalies and {n_normal} normal rows")
    return Dataset(path.stem, path, X, y)


def find_datasets(data_dir: str | Path) -> list[Path]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a directory")
    files = sorted(data_dir.glob("*.npz"), key=lambda p: p.name)
    if not files:
        raise ValueError(f"{data_dir}: no .npz files (each needs arrays X and y)")
    return files


def split(X: np.ndarray, y: np.ndarray, seed: int, test_size: float = 0.3, protocol: str = "clean"):
    """Stratified train/test split of one seed under the protocol (see the module docstring)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    random_state: int | np.random.RandomState = seed
    if protocol == "adbench":
        random_state = np.random.RandomState(seed)  # ADBench seeds NumPy's global (legacy) generator
        if len(y) < ADBENCH_MIN_ROWS:
            keep = random_state.choice(np.arange(len(y)), ADBENCH_MIN_ROWS, replace=True)
            X, y = X[keep], y[keep]
        elif len(y) > ADBENCH_MAX_ROWS:
            keep = random_state.choice(np.arange(len(y)), ADBENCH_MAX_ROWS, replace=False)
            X, y = X[keep], y[keep]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, stratify=y,
                                                        random_state=random_state)
    if protocol == "adbench":
        scaler = MinMaxScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, X_test, y_train, y_test


# -- the detectors -----------------------------------------------------------------------------------------
def anomaly_config():
    """The ``anomaly`` config group, composed from the project's conf/ (whether or not config.yaml lists it)."""
    from dxlab.config import compose

    cfg = compose([])
    if "anomaly" not in cfg:
        cfg = compose(["+anomaly=default"])
    return cfg


def default_detectors(cfg=None) -> dict:
    """The configured detectors plus ``auto``; without a project config, the same set from code defaults."""
    if cfg is not None:
        from dxlab.anomaly.detectors import detectors_from_config

        return detectors_from_config(cfg.anomaly)
    names = ("iforest", "lof", "ocsvm", "knn", "ecod", "mahalanobis", "autoencoder")
    detectors = {name: make_detector(name) for name in names}
    detectors["ensemble"] = EnsembleDetector({name: clone(d) for name, d in detectors.items()})
    detectors["auto"] = EnsembleDetector()
    return detectors


# -- running -----------------------------------------------------------------------------------------------
def evaluate_dataset(dataset: Dataset, detectors: Mapping, seeds: Sequence[int], test_size: float = 0.3,
                     protocol: str = "clean"):
    """Per detector and seed: ROC-AUC, PR-AUC, seconds. Also returns seed one's split and fitted detectors."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rows, first = [], None
    for i, seed in enumerate(seeds):
        X_train, X_test, y_train, y_test = split(dataset.X, dataset.y, seed, test_size, protocol)
        fitted = {}
        for name, detector in detectors.items():
            start = time.perf_counter()
            model = with_seed(detector, seed).fit(X_train)
            scores = model.score_samples(X_test)
            rows.append({"dataset": dataset.name, "detector": name, "seed": int(seed),
                         "roc_auc": float(roc_auc_score(y_test, scores)),
                         "pr_auc": float(average_precision_score(y_test, scores)),
                         "seconds": time.perf_counter() - start})
            fitted[name] = model
        if i == 0:
            first = {"X_train": X_train, "X_test": X_test, "y_train": y_train, "y_test": y_test, "fitted": fitted}
    return pd.DataFrame(rows), first


def run_benchmark(data_dir: str | Path, out_dir: str | Path, detectors: Mapping | None = None,
                  seeds: Sequence[int] | None = None, *, test_size: float = 0.3, protocol: str = "clean",
                  published: Mapping | None = None, figures: bool = True, figures_dir: str | Path | None = None,
                  explain_top: int = 10, max_plot_points: int = 2000,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Evaluate every detector on every .npz file of ``data_dir``; write the outputs (module docstring) into
    ``out_dir`` and return the results dict of ``results.json``. All files are checked before any is run.
    ``seeds`` default to the protocol's: 0 1 2 for ``clean``, ADBench's 1 2 3 for ``adbench``."""
    start = time.perf_counter()
    say = progress or log.info
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if seeds is None:
        seeds = ADBENCH_SEEDS if protocol == "adbench" else (0, 1, 2)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one seed is needed")
    datasets = [load_dataset(path) for path in find_datasets(data_dir)]
    if detectors is None:
        cfg = None
        try:
            cfg = anomaly_config()
        except FileNotFoundError:
            say("no dxlab project config found: using the code defaults for the detectors")
        detectors = default_detectors(cfg)
        if published is None and cfg is not None:
            from omegaconf import OmegaConf

            published = OmegaConf.to_container(cfg.anomaly.benchmark.published_roc_auc)
    detectors = dict(detectors)
    if not detectors:
        raise ValueError("no detectors to evaluate")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_dir = Path(figures_dir) if figures_dir is not None else out_dir / "figures"
    frames, info, figure_paths = [], {}, []
    for dataset in datasets:
        t0 = time.perf_counter()
        frame, first = evaluate_dataset(dataset, detectors, seeds, test_size, protocol)
        frames.append(frame)
        info[dataset.name] = {"file": dataset.path.name, "n_samples": int(len(dataset.y)),
                              "n_features": int(dataset.X.shape[1]),
                              "anomaly_share": round(float(dataset.y.mean()), 4)}
        _explain(dataset, first, out_dir / "explanations", explain_top)
        if figures:
            figure_paths += _figures(dataset, first, figure_dir, max_plot_points)
        auto = frame[frame["detector"] == ("auto" if "auto" in detectors else frame["detector"].iloc[0])]
        say(f"{dataset.name}: {len(detectors)} detectors x {len(seeds)} seeds in {time.perf_counter() - t0:.1f} s "
            f"({auto['detector'].iloc[0]} ROC-AUC {auto['roc_auc'].mean():.3f})")
    runs = pd.concat(frames, ignore_index=True)
    results = summarise(runs, list(detectors))
    seconds = time.perf_counter() - start
    details = {
        "protocol": protocol, "seeds": seeds, "test_size": test_size, "wall_seconds": round(seconds, 1),
        "datasets": info,
        "detectors": {name: repr(det) for name, det in detectors.items()},
        "spread": {ds: {det: {"roc_auc_std": round(float(g["roc_auc"].std(ddof=0)), 4),
                              "pr_auc_std": round(float(g["pr_auc"].std(ddof=0)), 4),
                              "seconds_per_fit": round(float(g["seconds"].mean()), 3)}
                        for det, g in by_ds.groupby("detector", sort=False)}
                   for ds, by_ds in runs.groupby("dataset", sort=False)},
        "runs": runs.round(4).to_dict(orient="records"),
    }
    _write_json(results, out_dir / "results.json")
    _write_json(details, out_dir / "details.json")
    (out_dir / "results.md").write_text(markdown_report(results, details, published or {}))
    say(f"wrote {out_dir / 'results.json'} and results.md in {seconds:.1f} s")
    return results


def summarise(runs: pd.DataFrame, detectors: Sequence[str]) -> dict:
    """Mean over seeds per dataset and detector, plus the mean over datasets (``mean``)."""
    results: dict = {}
    means = runs.groupby(["dataset", "detector"], sort=False)[["roc_auc", "pr_auc"]].mean()
    for dataset in dict.fromkeys(runs["dataset"]):
        results[dataset] = {det: {"roc_auc": round(float(means.loc[(dataset, det), "roc_auc"]), 4),
                                  "pr_auc": round(float(means.loc[(dataset, det), "pr_auc"]), 4)}
                            for det in detectors}
    results["mean"] = {det: {metric: round(float(np.mean([results[ds][det][metric] for ds in results])), 4)
                             for metric in ("roc_auc", "pr_auc")} for det in detectors}
    return results


def markdown_report(results: Mapping, details: Mapping, published: Mapping) -> str:
    datasets = [d for d in results if d != "mean"]
    detectors = list(results["mean"])
    info = details["datasets"]
    keys = {d: dataset_key(d) for d in datasets}
    methods = sorted({m for d in datasets for m in published.get(keys[d], {})},
                     key=lambda m: ("iforest", "lof", "ocsvm").index(m) if m in ("iforest", "lof", "ocsvm") else 9)
    pct = lambda v: "–" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    lines = ["# Anomaly detection benchmark", "",
             f"Protocol `{details['protocol']}`: stratified {int(100 * (1 - details['test_size']))}/"
             f"{int(100 * details['test_size'])} split of each file, seeds {details['seeds']}; every detector "
             "fitted on the training part without labels and scored on the test part; mean over seeds, x100. "
             f"Wall time {details['wall_seconds']:.0f} s. Produced by `dxlab anomaly-benchmark`.", ""]
    if "auto" in details.get("detectors", {}):
        auto = " ".join(details["detectors"]["auto"].split())
        lines += [f"`auto` (fixed before any test label was seen, the same for every file): `{auto}`", ""]
    for metric, title in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC (average precision)")):
        extra = [f"published {m}" for m in methods] if metric == "roc_auc" else []
        lines += [f"## {title}", "", "| dataset | n | d | anomalies | " + " | ".join(detectors + extra) + " |",
                  "|---|---:|---:|---:|" + "---:|" * (len(detectors) + len(extra))]
        for d in datasets:
            row = [d, str(info[d]["n_samples"]), str(info[d]["n_features"]), f"{100 * info[d]['anomaly_share']:.1f}%"]
            row += [pct(results[d][det][metric]) for det in detectors]
            if extra:
                row += [f"{published[keys[d]][m]:.1f}" if m in published.get(keys[d], {}) else "–" for m in methods]
            lines.append("| " + " | ".join(row) + " |")
        mean_row = ["**mean**", "", "", ""] + [f"**{pct(results['mean'][det][metric])}**" for det in detectors]
        if extra:
            mean_row += [_published_mean(published, [keys[d] for d in datasets], m) for m in methods]
        lines += ["| " + " | ".join(mean_row) + " |", ""]
    if "auto" in detectors and any(keys[d] in published for d in datasets):
        lines += _auto_vs_published(results, details, published, datasets, keys, pct)
    return "\n".join(lines) + "\n"


def _published_mean(published, keys, method) -> str:
    values = [published[k][method] for k in keys if method in published.get(k, {})]
    return f"{np.mean(values):.1f}" if len(values) == len(keys) else "–"


def _auto_vs_published(results, details, published, datasets, keys, pct) -> list[str]:
    rows = [d for d in datasets if "iforest" in published.get(keys[d], {})]
    ours = "iforest" in results["mean"]
    lines = ["## `auto` against the published Isolation Forest (ROC-AUC x100)", "",
             "| dataset | auto | auto sd over seeds | " + ("iforest (this run) | " if ours else "")
             + "published IForest | auto - published |", "|---|---:|---:|" + ("---:|" if ours else "") + "---:|---:|"]
    diffs, autos, mine, pubs = [], [], [], []
    for d in rows:
        auto, pub = 100 * results[d]["auto"]["roc_auc"], published[keys[d]]["iforest"]
        sd = 100 * details["spread"][d]["auto"]["roc_auc_std"]
        line = [d, f"{auto:.1f}", f"{sd:.1f}"] + ([pct(results[d]["iforest"]["roc_auc"])] if ours else [])
        lines.append("| " + " | ".join(line + [f"{pub:.1f}", f"{auto - pub:+.1f}"]) + " |")
        diffs.append(auto - pub)
        autos.append(auto)
        pubs.append(pub)
        if ours:
            mine.append(100 * results[d]["iforest"]["roc_auc"])
    mean = ["**mean**", f"**{np.mean(autos):.1f}**", ""] + ([f"{np.mean(mine):.1f}"] if ours else [])
    lines += ["| " + " | ".join(mean + [f"{np.mean(pubs):.1f}", f"**{np.mean(diffs):+.1f}**"]) + " |", ""]
    return lines


def _explain(dataset: Dataset, first: dict, out_dir: Path, top: int) -> None:
    """The top test anomalies of `auto` (else the first detector), with Isolation Forest path and autoencoder
    reconstruction attributions when those detectors were run."""
    from dxlab.anomaly.explain import explain_top, method_name

    if top <= 0:
        return
    fitted = first["fitted"]
    name = "auto" if "auto" in fitted else next(iter(fitted))
    explainers = {method_name(fitted[n]): fitted[n] for n in ("iforest", "autoencoder") if n in fitted}
    table = explain_top(fitted[name], first["X_test"], top=top, reference=first["X_train"],
                        explainers=explainers or None)
    table.insert(0, "detector", name)
    table.insert(3, "label", first["y_test"][table["row"].to_numpy(dtype=int)])
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / f"{dataset.name}.csv", index=False)


def _figures(dataset: Dataset, first: dict, out_dir: Path, max_points: int) -> list[Path]:
    """PCA and t-SNE of all rows of seed one's split (labels shown, not used), coloured by label and by score."""
    from dxlab.anomaly.explain import plot_embeddings

    fitted = first["fitted"]
    name = "auto" if "auto" in fitted else next(iter(fitted))
    X = np.vstack([first["X_train"], first["X_test"]])
    y = np.concatenate([first["y_train"], first["y_test"]])
    return plot_embeddings(X, y, out_dir, dataset.name, scores=fitted[name].score_samples(X), max_points=max_points,
                           title=f"{dataset.name}: labels (left) and {name} score (right)")


def _write_json(data, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# -- command line ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """`dxlab anomaly-benchmark`; returns the exit code (2 on bad input, with the reason on stderr)."""
    parser = argparse.ArgumentParser(prog="dxlab anomaly-benchmark", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder of .npz files with arrays X and y")
    parser.add_argument("--out", required=True, help="output folder (results.json, results.md, ...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="split seeds (default: config, 0 1 2; with --protocol adbench, ADBench's 1 2 3)")
    parser.add_argument("--detectors", nargs="+", default=None, help="evaluate only these configured detectors")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None, help="clean (default) or adbench")
    parser.add_argument("--figures-dir", default=None, help="where the PCA / t-SNE plots go (default OUT/figures)")
    parser.add_argument("--no-figures", action="store_true", help="skip the PCA / t-SNE plots")
    parser.add_argument("--explain-top", type=int, default=None, help="top anomalies explained per dataset")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = anomaly_config()
    except FileNotFoundError:
        cfg = None
    bench = cfg.anomaly.benchmark if cfg is not None else {}
    detectors = default_detectors(cfg)
    if args.detectors:
        unknown = sorted(set(args.detectors) - set(detectors))
        if unknown:
            print(f"error: unknown detectors {unknown}; configured: {sorted(detectors)}", file=sys.stderr)
            return 2
        detectors = {name: detectors[name] for name in args.detectors}
    published = None
    if cfg is not None:
        from omegaconf import OmegaConf

        published = OmegaConf.to_container(cfg.anomaly.benchmark.published_roc_auc)
    protocol = args.protocol or bench.get("protocol", "clean")
    options = dict(
        seeds=args.seeds or (None if protocol == "adbench" else bench.get("seeds")),  # None: the protocol's
        test_size=float(bench.get("test_size", 0.3)),
        protocol=protocol,
        published=published,
        figures=not args.no_figures and bool(bench.get("figures", True)),
        figures_dir=args.figures_dir,
        explain_top=args.explain_top if args.explain_top is not None else int(bench.get("explain_top", 10)),
        max_plot_points=int(cfg.anomaly.get("max_plot_points", 2000)) if cfg is not None else 2000,
        progress=print,
    )
    tracking = cfg is not None and not args.no_mlflow
    try:
        if tracking:
            results = _run_tracked(cfg, args, detectors, options)
        else:
            results = run_benchmark(args.data_dir, args.out, detectors, **options)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n" + (Path(args.out) / "results.md").read_text())
    return 0 if results else 1


def _run_tracked(cfg, args, detectors, options) -> dict:
    from dxlab.tracking.mlflow_tracking import log_artifact, log_metrics, stage_run

    with stage_run("anomaly_benchmark", cfg, tags={"dxlab.data_dir": str(Path(args.data_dir).resolve())}):
        results = run_benchmark(args.data_dir, args.out, detectors, **options)
        log_metrics(results)
        out = Path(args.out)
        for name in ("results.json", "results.md", "details.json"):
            log_artifact(out / name)
        for path in sorted((out / "explanations").glob("*.csv")):
            log_artifact(path, "explanations")
        figure_dir = Path(options["figures_dir"]) if options["figures_dir"] else out / "figures"
        for path in sorted(figure_dir.glob("anomaly_*.png")):
            log_artifact(path, "figures")
    return results


if __name__ == "__main__":
    sys.exit(main())
