"""`make bench`: training time, peak memory, prediction throughput and quality per model and augmentation.

Each combination runs in its own process (so peak memory is its own), on the training rows of the last
`make repro` that the model trains on (its `train_sources`: the simulated feed for the zoo, every source for the
diagnostic model and its baseline), scored on the simulated test split. Results: bench/results.json and
bench/results.md.

    .venv/bin/python bench/models.py [--models diagnostic,logreg] [--augments none,smote]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_MODELS = ("diagnostic", "bayes", "knowledge_ranker", "logreg", "mlp", "rf", "xgb")
DEFAULT_AUGMENTS = ("none", "class_weight", "smote", "knowledge")


def run_member(model: str, augment: str, repeats: int = 3) -> dict:
    """Fit one pipeline on the training split, time it, score the test split; runs inside a child process."""
    import numpy as np
    from omegaconf import OmegaConf

    from dxlab.config import compose, project_root
    from dxlab.data.schema import read_parquet
    from dxlab.evaluation.metrics import evaluate_predictions
    from dxlab.models.build import build_pipeline, model_specs, takes_groups

    overrides = [f"model={model}"]
    if (project_root() / "conf" / "augment").is_dir():
        overrides.append(f"augment={augment}")
    cfg = compose(overrides)
    processed = Path(cfg.paths.processed)
    train, test = read_parquet(processed / "train.parquet"), read_parquet(processed / "test.parquet")
    spec = next(s for s in model_specs(cfg) if s.name == cfg.model.name)
    train = spec.training_rows(train)
    pipeline = build_pipeline(cfg, spec)
    start = time.perf_counter()
    y = train["diagnosis"].astype(str).to_numpy()
    if takes_groups(pipeline):
        pipeline.fit(train, y, groups=train["group_id"].astype(str).to_numpy())
    else:
        pipeline.fit(train, y)
    fit_seconds = time.perf_counter() - start
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        proba = pipeline.predict_proba(test)
        timings.append(time.perf_counter() - start)
    counts = train["diagnosis"].astype(str).value_counts().to_dict()
    metrics = evaluate_predictions(test["diagnosis"].astype(str).to_numpy(), proba,
                                   np.asarray(pipeline.classes_).astype(str), counts,
                                   OmegaConf.to_container(cfg.evaluate.strata))
    return {
        "model": model, "augment": augment, "fit_seconds": round(fit_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "predict_patients_per_second": round(len(test) / min(timings), 1),
        "n_train": int(len(train)), "n_test": int(len(test)), "n_classes": int(len(pipeline.classes_)),
        "metrics": {s: {k: v for k, v in m.items() if k in ("top1", "top3", "top10", "macro_f1", "ece")}
                    for s, m in metrics.items()},
    }


def to_markdown(results: list[dict]) -> str:
    head = ("| model | augment | training rows | diseases | fit s | peak RSS MB | predict patients/s | top1 | top3 | "
            "rare top1 | rare top3 | macro F1 | ECE |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in results:
        if "error" in r:
            rows.append(f"| {r['model']} | {r['augment']} | failed: {r['error'][:60]} |||||||||")
            continue
        o, rare = r["metrics"]["overall"], r["metrics"]["rare"]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        rows.append(f"| {r['model']} | {r['augment']} | {r['n_train']:,} | {r.get('n_classes', 0):,} | "
                    f"{r['fit_seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
                    f"{r['predict_patients_per_second']:.0f} | {fmt(o['top1'])} | {fmt(o['top3'])} | "
                    f"{fmt(rare['top1'])} | {fmt(rare['top3'])} | {fmt(o['macro_f1'])} | {fmt(o['ece'])} |")
    return head + "\n" + "\n".join(rows)


def _takes_patients(model: str) -> bool:
    import yaml

    from dxlab.config import project_root

    path = project_root() / "conf" / "model" / f"{model}.yaml"
    return path.exists() and (yaml.safe_load(path.read_text()) or {}).get("input") == "patients"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/models.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--augments", default=",".join(DEFAULT_AUGMENTS))
    parser.add_argument("--out", default="bench")
    parser.add_argument("--member", nargs=2, metavar=("MODEL", "AUGMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.member:
        print(json.dumps(run_member(*args.member)))
        return 0
    results = []
    for model in args.models.split(","):
        for augment in args.augments.split(","):
            if augment != "none" and _takes_patients(model):
                continue  # samplers do not apply to a model that takes the patient table
            proc = subprocess.run([sys.executable, __file__, "--member", model, augment], capture_output=True, text=True)
            if proc.returncode != 0:
                results.append({"model": model, "augment": augment, "error": proc.stderr.strip().splitlines()[-1]})
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(to_markdown(results[-1:]).splitlines()[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = to_markdown(results)
    import os

    note = (f"Each row fitted in its own process on its training rows of the last `make repro` (the simulated feed "
            f"for the zoo; every source, real case reports included, for the diagnostic model and its baseline); "
            f"scored on the simulated test split ({results[0].get('n_test', '?')} patients): predict = the test "
            f"split, best of 3; top-k and ECE on simulated patients say the pipeline runs, not how a model does on "
            f"real ones (docs/model.md). Load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
            f"cores. Produced by `make bench` (`bench/models.py`).")
    (out / "results.md").write_text("# dxlab benchmark (default split, 2-core machine)\n\n" + note + "\n\n"
                                    + table + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
