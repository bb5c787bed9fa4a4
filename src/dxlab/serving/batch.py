"""Daily batch prediction: every patient file of a folder (the formats ingest reads) scored into parquet.

Per input file: read with the configured source adapter, read the clinical notes as ingest does (the same
`dxlab.data.notes.read_notes`, the feed's `notes.mode`: a file with a `note` column is scored from it), pseudonymise
ids (the ingest key, so pseudonyms match the training data's), validate as the validate stage does (minus the
label: diagnoses arrive later), quarantine bad rows (an unreadable note among them) with file, row, field and
reason, score the rest in chunks, and write

    OUTPUT/predictions/<file stem>.parquet   one row per valid patient (see Scorer.score)
    OUTPUT/quarantine/<file stem>.csv        one row per issue
    OUTPUT/manifest.json                     what was scored: file digest, counts, model version
    OUTPUT/summary.json                      totals of the last run

A file the manifest lists with the same digest and model version (and whose output exists) is skipped unless
`overwrite`: a new champion rescores, an unchanged file under the same model does not.
Engines: `local` (in process, or `n_jobs` processes over files) and `dask` (one task per file on a LocalCluster
or the scheduler at `scheduler`); every engine runs the same `process_file`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from dxlab.data.pseudonym import pseudonymise
from dxlab.data.sources import feed_settings, feed_source
from dxlab.data.validation import validate_table

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ["source_file", "source_row", "field", "reason", "patient_id"]
DAY_PATTERN = r"(\d{4}-\d{2}-\d{2})"


@dataclass
class FileResult:
    file: str
    digest: str
    n_rows: int = 0
    n_scored: int = 0
    n_quarantined: int = 0
    n_anomalies: int = 0
    issues_by_field: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False
    output: str = ""
    model: str = ""
    model_version: str = ""


@dataclass
class ValidationSettings:
    age_range: tuple[float, float] = (0.0, 120.0)
    measurement_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    require_findings: bool = True

    @classmethod
    def from_config(cls, v) -> "ValidationSettings":
        return cls(tuple(float(x) for x in v.age_range),
                   {k: (float(r[0]), float(r[1])) for k, r in (v.get("measurement_ranges") or {}).items()},
                   bool(v.get("require_findings", True)))


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def newest_files(files: Sequence[Path], n: int | None, day_pattern: str = DAY_PATTERN) -> list[Path]:
    """The files of the newest `n` days (by the date in the name; files without one sort first)."""
    files = list(files)
    if not n or n <= 0:
        return files

    def day(p: Path) -> str:
        m = re.search(day_pattern, p.name)
        return m.group(1) if m else ""

    days = sorted({day(p) for p in files})[-int(n):]
    return [p for p in files if day(p) in days]


def read_patients(source, path: Path, pseudonym_key: bytes, scorer, settings: ValidationSettings,
                  notes=None, notes_mode: str = "merge") -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(valid canonical rows with pseudonymised ids, quarantine issues, rows read) for one file; its notes read by
    `notes` (a `dxlab.data.notes.NoteReader`) when given."""
    result = source.read_file(path)
    if notes is not None:
        result, _ = notes.read_result(result, notes_mode)
    table = result.table
    raw_ids = table["patient_id"].astype(str).tolist()
    pseudo = [pseudonymise(pid, pseudonym_key, source.name) for pid in raw_ids]
    by_row = dict(zip(table["source_row"], pseudo))
    table["patient_id"] = pseudo
    for issue in result.issues:  # the raw id never leaves the adapter
        issue.patient_id = by_row.get(issue.source_row, "")
    term_known = None
    if scorer.vocabulary is not None:
        index, aliases = scorer.vocabulary
        term_known = lambda t: t in index or t in aliases  # noqa: E731
    checked = validate_table(table, result.issues, term_known, None, labelled=False,
                             age_range=settings.age_range, measurement_ranges=settings.measurement_ranges,
                             require_findings=settings.require_findings)
    return checked.valid, checked.quarantined, len(table)


def _chunks(n: int, size: int) -> list[slice]:
    size = max(int(size), 1)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def process_file(path: str | Path, source, pseudonym_key: bytes, scorer, output: str | Path,
                 settings: ValidationSettings, chunk_size: int = 20000, write_csv: bool = False, progress: bool = False,
                 digest: str | None = None, threads: int | None = 1, notes=None,
                 notes_mode: str = "merge") -> FileResult:
    """Read, validate, score and write one file (what every engine runs)."""
    if threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(int(threads)):
            return _process_file(path, source, pseudonym_key, scorer, output, settings, chunk_size, write_csv,
                                 progress, digest, notes, notes_mode)
    return _process_file(path, source, pseudonym_key, scorer, output, settings, chunk_size, write_csv, progress,
                         digest, notes, notes_mode)


def _process_file(path, source, pseudonym_key, scorer, output, settings, chunk_size, write_csv, progress,
                  digest, notes=None, notes_mode="merge") -> FileResult:
    start = time.perf_counter()
    path, output = Path(path), Path(output)
    result = FileResult(file=path.name, digest=digest or file_digest(path), model=scorer.model_name,
                        model_version=scorer.model_version)
    valid, quarantined, result.n_rows = read_patients(source, path, pseudonym_key, scorer, settings, notes,
                                                      notes_mode)
    (output / "quarantine").mkdir(parents=True, exist_ok=True)
    (output / "predictions").mkdir(parents=True, exist_ok=True)
    quarantined = quarantined.sort_values(["source_file", "source_row"])
    quarantined[QUARANTINE_COLUMNS].to_csv(output / "quarantine" / f"{path.stem}.csv", index=False)
    result.n_quarantined = int(quarantined[["source_file", "source_row"]].drop_duplicates().shape[0])
    result.issues_by_field = {str(k): int(v) for k, v in quarantined.groupby("field").size().items()}
    parts = []
    slices = _chunks(len(valid), chunk_size)
    bar = _progress(len(slices), f"{path.name}", enabled=progress and len(slices) > 1)
    for part in slices:
        parts.append(scorer.score(valid.iloc[part]))
        bar.update(1)
    bar.close()
    scored = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    out = output / "predictions" / f"{path.stem}.parquet"
    _write_predictions(scored, out, write_csv)
    result.n_scored = int(len(scored))
    result.n_anomalies = int((scored["anomaly_flag"] == 1).sum()) if len(scored) else 0
    result.output = str(out)
    result.seconds = round(time.perf_counter() - start, 3)
    for rec in quarantined.drop_duplicates(["source_file", "source_row"]).head(5).itertuples():
        log.warning("quarantined %s row %d, field %s: %s", rec.source_file, rec.source_row, rec.field, rec.reason)
    return result


def _write_predictions(scored: pd.DataFrame, path: Path, write_csv: bool) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame = scored.copy()
    for col in ("key_findings", "key_finding_weights"):
        if col in frame:
            frame[col] = [list(v) for v in frame[col]]
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)  # a crashed run never leaves a half-written file that looks scored
    if write_csv:
        flat = frame.copy()
        for col in ("key_findings", "key_finding_weights"):
            if col in flat:
                flat[col] = [";".join(str(x) for x in v) for v in flat[col]]
        flat.to_csv(path.with_suffix(".csv"), index=False)


def read_predictions(output: str | Path) -> pd.DataFrame:
    """Every predictions parquet under OUTPUT/predictions (or a single parquet file)."""
    output = Path(output)
    files = [output] if output.is_file() else sorted((output / "predictions").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no predictions under {output}: run `dxlab predict` first")
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk" if desc != "files" else "file", leave=False)


# -- the run ------------------------------------------------------------------------------------------------
def load_manifest(output: Path) -> dict:
    path = output / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"files": {}}


def _source_for(source, input_path: str | Path):
    src = copy.copy(source)
    src.path = Path(input_path) if isinstance(source.path, Path) else str(input_path)
    return src


def predict_folder(input_path: str | Path, output: str | Path, scorer, source, pseudonym_key: bytes,
                   settings: ValidationSettings | None = None, *, files: Sequence[Path] | None = None,
                   overwrite: bool = False, chunk_size: int = 20000, engine: str = "local", n_jobs: int = 1,
                   scheduler: str | None = None, n_workers: int = 2, threads_per_worker: int = 1,
                   write_csv: bool = False, progress: bool = True, threads: int | None = 1, notes=None,
                   notes_mode: str = "merge") -> dict:
    """Score every file of `input_path` (or `files`) not scored yet; returns the summary (also written).
    `notes`: a `dxlab.data.notes.NoteReader` reading each file's notes (mode `notes_mode`), None to read none."""
    start = time.perf_counter()
    settings = settings or ValidationSettings()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    source = _source_for(source, input_path)
    files = [Path(p) for p in (files if files is not None else source.files())]
    if not files:
        raise FileNotFoundError(f"no input files under {input_path}")
    manifest = load_manifest(output)
    todo, skipped = [], []
    for path in files:
        digest = file_digest(path)
        seen = manifest["files"].get(path.name)
        if (not overwrite and seen and seen.get("digest") == digest and seen.get("output")
                and seen.get("model_version") == scorer.model_version and Path(seen["output"]).exists()):
            skipped.append(FileResult(**{**seen, "skipped": True}))
        else:
            todo.append((path, digest))
    if notes is not None and todo and (engine == "dask" or (n_jobs and n_jobs != 1 and len(todo) > 1)):
        _ = notes.annotator  # built once here and sent with the reader, not rebuilt by every worker's task
    common = dict(source=source, pseudonym_key=pseudonym_key, scorer=scorer, output=output, settings=settings,
                  chunk_size=chunk_size, write_csv=write_csv, threads=threads, notes=notes, notes_mode=notes_mode)
    if engine == "dask":
        results = _run_dask(todo, common, scheduler, n_workers, threads_per_worker, progress)
    elif engine == "local":
        results = _run_local(todo, common, n_jobs, progress)
    else:
        raise ValueError(f"engine must be 'local' or 'dask', got {engine!r}")
    for r in results:
        manifest["files"][r.file] = {k: v for k, v in asdict(r).items() if k != "skipped"}
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    summary = summarise(results, skipped, time.perf_counter() - start, scorer, engine)
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("scored %d patients of %d files (%d skipped as already scored), %d quarantined, %d anomalies, "
             "%.1f s", summary["n_scored"], summary["n_files_scored"], summary["n_files_skipped"],
             summary["n_quarantined"], summary["n_anomalies"], summary["seconds"])
    return summary


def summarise(results: Sequence[FileResult], skipped: Sequence[FileResult], seconds: float, scorer,
              engine: str) -> dict:
    by_field: dict[str, int] = {}
    for r in results:
        for k, v in r.issues_by_field.items():
            by_field[k] = by_field.get(k, 0) + v
    n_scored = sum(r.n_scored for r in results)
    return {
        "model": scorer.model_name, "model_version": scorer.model_version, "engine": engine,
        "n_files_scored": len(results), "n_files_skipped": len(skipped),
        "files_skipped": [r.file for r in skipped],
        "n_rows": sum(r.n_rows for r in results), "n_scored": n_scored,
        "n_quarantined": sum(r.n_quarantined for r in results), "quarantined_by_field": by_field,
        "n_anomalies": sum(r.n_anomalies for r in results),
        "seconds": round(seconds, 3), "patients_per_second": round(n_scored / seconds, 1) if seconds > 0 else None,
        "files": [asdict(r) for r in results],
    }


def _run_local(todo, common: dict, n_jobs: int, progress: bool) -> list[FileResult]:
    if n_jobs and n_jobs != 1 and len(todo) > 1:
        from joblib import Parallel, delayed

        return list(Parallel(n_jobs=n_jobs)(delayed(process_file)(p, digest=d, **common) for p, d in todo))
    bar = _progress(len(todo), "files", enabled=progress and len(todo) > 1)
    results = []
    for path, digest in todo:
        results.append(process_file(path, digest=digest, progress=progress and len(todo) == 1, **common))
        bar.update(1)
    bar.close()
    return results


def _run_dask(todo, common: dict, scheduler: str | None, n_workers: int, threads_per_worker: int,
              progress: bool) -> list[FileResult]:
    """One task per file on a dask cluster; the scorer is sent to every worker once."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    try:
        if not todo:
            return []
        scorer = client.scatter(common["scorer"], broadcast=True)
        shared = {"scorer": scorer}
        if common.get("notes") is not None:
            shared["notes"] = client.scatter(common["notes"], broadcast=True)
        rest = {k: v for k, v in common.items() if k not in shared}
        futures = [client.submit(process_file, str(p), digest=d, pure=False, **shared, **rest) for p, d in todo]
        bar = _progress(len(futures), "files", enabled=progress)
        by_file = {}
        for fut in as_completed(futures):
            r = fut.result()
            by_file[r.file] = r
            bar.update(1)
        bar.close()
        return [by_file[Path(p).name] for p, _ in todo]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()



def predict_from_config(cfg, input_path: str | Path | None = None, output: str | Path | None = None,
                        model: str | None = None, newest_days: int | None = None, **options) -> dict:
    """`dxlab predict` / the predict stage: the scorer, source adapter and key from the composed config.

    options override serve.batch (engine, n_jobs, scheduler, overwrite, chunk_size, write_csv, progress)."""
    from dxlab.data.notes import feed_notes
    from dxlab.serving.scorer import Scorer, pseudonym_key

    b = cfg.serve.batch
    input_path = Path(input_path or b.input)
    output = Path(output or b.output)
    scorer = Scorer.from_config(cfg, model=model)
    source = _source_for(feed_source(cfg), input_path)
    files = None
    if newest_days:
        files = newest_files(source.files(), newest_days, feed_settings(cfg).source.get("day_pattern") or DAY_PATTERN)
    settings = ValidationSettings.from_config(cfg.serve.validate)
    opts = {"overwrite": b.overwrite, "chunk_size": b.chunk_size, "engine": b.engine, "n_jobs": b.n_jobs,
            "scheduler": b.dask.scheduler, "n_workers": b.dask.n_workers,
            "threads_per_worker": b.dask.threads_per_worker, "write_csv": b.write_csv, "progress": b.progress,
            "threads": b.get("threads")}
    opts.update({k: v for k, v in options.items() if v is not None})
    # the feed's notes, read as ingest reads them (one annotator, built when a file has a note)
    notes, mode = feed_notes(cfg)
    opts.setdefault("notes", notes)
    opts.setdefault("notes_mode", mode)
    return predict_folder(input_path, output, scorer, source, pseudonym_key(cfg), settings, files=files, **opts)
