"""Daily batch prediction: every patient file of a folder (the formats ingest reads) scored into parquet.

Per input file: read with the configured source adapter, read the clinical notes as ingest does (the same
`dxlab.data.notes.read_notes`, the feed's `notes.mode`: a file with a `note` column is scored from it), pseudonymise
ids (the ingest key, so pseudonyms match the training data's), validate as the validate stage does (minus the
label: diagnoses arrive later), quarantine bad rows (an unreadable note among them) with file, row, field and
reason, score the rest in chunks, and write

    OUTPUT/predictions/<file stem>.parquet   one row per valid patient (see Scorer.score)
    OUTPUT/quarantine/<file stem>.csv        one row per issue: file, row, field, reason -- never a cell's content
    OUTPUT/quarantine/raw/                   the quarantined rows themselves (<file stem>.rows.raw.csv) and copies
                                             of whole bad files, for the data owner: owner-only (0600, folder 0700)
    OUTPUT/manifest.json                     the files finished: input digest, counts, model version
    OUTPUT/summary.json                      totals of the last run: files read, quarantined, skipped, rows

A bad file -- empty, binary, not UTF-8, header only, unreadable by the adapter, or every row bad -- is quarantined
as a whole (field `file`, row 0, the reason naming the file) and the run goes on. The same patient id in two files
of a batch is a duplicate in the later file (files in name order), whatever the engine. Every output is written
to a temporary name, fsynced and renamed, and the manifest entry of a file is written (the same way) once its
outputs are: a run killed at any moment and started again rescores only the files not finished. A file the
manifest lists with the same digest and model version (and whose output exists) is skipped unless `overwrite`: a
new champion rescores, an unchanged file under the same model does not.
Engines: `local` (in process, or `n_jobs` processes over files) and `dask` (one task per file on a LocalCluster
or the scheduler at `scheduler`); every engine runs the same `process_file`.
"""

from __future__ import annotations

import codecs
import copy
import hashlib
import io
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from dxlab.data.pseudonym import pseudonymise
from dxlab.data.quarantine import RAW_FOLDER, keep_raw_file, raw_rows, write_atomic, write_raw_rows
from dxlab.data.sources import feed_settings, feed_source
from dxlab.data.validation import validate_table

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ["source_file", "source_row", "field", "reason", "patient_id"]
DAY_PATTERN = r"(\d{4}-\d{2}-\d{2})"
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl")
FILE_FIELD = "file"  # the field of an issue about a whole file (row 0)


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
    quarantined_file: bool = False  # the whole file quarantined (see `reason`)
    reason: str = ""


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
                  notes=None, notes_mode: str = "merge", seen_ids: set[str] | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(valid canonical rows with pseudonymised ids, quarantine issues, rows read) for one file; its notes read by
    `notes` (a `dxlab.data.notes.NoteReader`) when given; `seen_ids`: pseudonyms an earlier file of the batch has
    (a row with one is a duplicate)."""
    table, valid, quarantined = _read_checked(source, path, pseudonym_key, scorer, settings, notes, notes_mode,
                                              seen_ids)
    return valid, quarantined, len(table)


def _read_checked(source, path, pseudonym_key, scorer, settings, notes=None, notes_mode="merge", seen_ids=None):
    """(the table as read, pseudonymised; its valid rows; the issues)."""
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
                             require_findings=settings.require_findings, seen_ids=seen_ids)
    return table, checked.valid, checked.quarantined


def read_or_problem(source, path: Path, pseudonym_key: bytes, scorer, settings: ValidationSettings, notes=None,
                    notes_mode: str = "merge", seen_ids: set[str] | None = None):
    """(the table as read, its valid rows, the issues, None) for a readable file; (None, None, None, why not) for a
    file unreadable as a whole (empty, binary, not UTF-8, or anything the adapter raises): `dxlab predict`
    quarantines it and `dxlab monitor` reports it, and both go on with the other files."""
    problem = file_problem(path)
    if problem is None:
        try:
            return (*_read_checked(source, path, pseudonym_key, scorer, settings, notes, notes_mode, seen_ids), None)
        except Exception as err:  # noqa: BLE001 -- any file the adapter cannot read is reported, the run goes on
            problem = _read_error(path, err)
    return None, None, None, problem


def file_issue(path: Path, problem: str) -> pd.DataFrame:
    """The one issue of a file unreadable as a whole: field `file`, row 0, the reason naming the file."""
    return pd.DataFrame([{"source_file": Path(path).name, "source_row": 0, "field": FILE_FIELD,
                          "reason": f"{Path(path).name}: {problem}", "patient_id": ""}])


def file_problem(path: Path) -> str | None:
    """What makes a text file unreadable as a whole (empty, binary, not UTF-8), in words that quote none of it."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, blank = 0, True
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            if b"\x00" in block:
                return "binary data, not text (NUL bytes)"
            try:
                blank = blank and not decoder.decode(block).strip()
            except UnicodeDecodeError as err:
                return (f"not UTF-8 text (an invalid byte at position {offset + err.start:,}: Latin-1 or another "
                        "encoding?); save it as UTF-8")
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "not UTF-8 text (the file ends inside a character); save it as UTF-8"
    return "empty file (whitespace only)" if blank else None


def _read_error(path: Path, err: Exception) -> str:
    """An adapter's error as a reason: its message when it is the adapter's own (it names the file first, and no
    cell), else only what kind of error it was."""
    message = str(err)
    if isinstance(err, pd.errors.EmptyDataError):
        return "empty file (no header, no rows)"
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text; save it as UTF-8"
    if isinstance(err, pd.errors.ParserError):
        return "not a table the feed's adapter can read (malformed CSV)"
    if isinstance(err, ValueError) and message.startswith(str(path)):
        return message[len(str(path)):].lstrip(": ")
    return f"cannot be read by the feed's adapter ({type(err).__name__})"


def _chunks(n: int, size: int) -> list[slice]:
    size = max(int(size), 1)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def process_file(path: str | Path, source, pseudonym_key: bytes, scorer, output: str | Path,
                 settings: ValidationSettings, chunk_size: int = 20000, write_csv: bool = False, progress: bool = False,
                 digest: str | None = None, threads: int | None = 1, notes=None,
                 notes_mode: str = "merge", seen_ids: set[str] | None = None) -> FileResult:
    """Read, validate, score and write one file (what every engine runs)."""
    args = (path, source, pseudonym_key, scorer, output, settings, chunk_size, write_csv, progress, digest, notes,
            notes_mode, seen_ids)
    if threads:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(int(threads)):
            return _process_file(*args)
    return _process_file(*args)


def _process_file(path, source, pseudonym_key, scorer, output, settings, chunk_size, write_csv, progress,
                  digest, notes=None, notes_mode="merge", seen_ids=None) -> FileResult:
    start = time.perf_counter()
    path, output = Path(path), Path(output)
    result = FileResult(file=path.name, digest=digest or file_digest(path), model=scorer.model_name,
                        model_version=scorer.model_version)
    (output / "quarantine").mkdir(parents=True, exist_ok=True)
    (output / "predictions").mkdir(parents=True, exist_ok=True)
    predictions = output / "predictions" / f"{path.stem}.parquet"
    issues_file = output / "quarantine" / f"{path.stem}.csv"
    raw_file = output / "quarantine" / RAW_FOLDER / f"{path.stem}.rows.raw.csv"
    table, valid, quarantined, problem = read_or_problem(source, path, pseudonym_key, scorer, settings, notes,
                                                         notes_mode, seen_ids)
    if quarantined is None:
        quarantined = pd.DataFrame(columns=[*QUARANTINE_COLUMNS, "source"])
    if problem is None:
        result.n_rows = int(len(table))
        if not len(table):
            problem = "no patient rows (a header only)"
        elif not len(valid):
            problem = f"every row failed validation ({len(table):,} rows; see the issues of each row)"
    if problem is not None:
        result.quarantined_file, result.reason = True, f"{path.name}: {problem}"
        quarantined = pd.concat([file_issue(path, problem), quarantined[QUARANTINE_COLUMNS]], ignore_index=True)
    quarantined = quarantined.sort_values(["source_file", "source_row"], kind="stable")
    result.n_quarantined = int(quarantined.loc[quarantined["source_row"].astype(int) > 0,
                                               ["source_file", "source_row"]].drop_duplicates().shape[0])
    result.issues_by_field = {str(k): int(v) for k, v in quarantined.groupby("field").size().items()}
    # the rows themselves, for the data owner only (re-read from the file: the cells as they were)
    rows = raw_rows(quarantined[quarantined["source_row"].astype(int) > 0], table, {path.name: path})
    write_raw_rows(rows, raw_file)
    if result.quarantined_file and table is None:
        keep_raw_file(path, output / "quarantine")
    write_atomic(issues_file, quarantined[QUARANTINE_COLUMNS].to_csv(index=False))
    if result.quarantined_file:
        predictions.unlink(missing_ok=True)  # a file that was scored once and is bad now has no predictions
        predictions.with_suffix(".csv").unlink(missing_ok=True)
        result.output = str(issues_file)
    else:
        parts = []
        slices = _chunks(len(valid), chunk_size)
        bar = _progress(len(slices), f"{path.name}", enabled=progress and len(slices) > 1)
        for part in slices:
            parts.append(scorer.score(valid.iloc[part]))
            bar.update(1)
        bar.close()
        scored = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        _write_predictions(scored, predictions, write_csv)
        result.n_scored = int(len(scored))
        result.n_anomalies = int((scored["anomaly_flag"] == 1).sum()) if len(scored) else 0
        result.output = str(predictions)
    result.seconds = round(time.perf_counter() - start, 3)
    if result.quarantined_file:
        log.warning("quarantined the whole file %s", result.reason)
    for rec in quarantined[quarantined["source_row"].astype(int) > 0].drop_duplicates(
            ["source_file", "source_row"]).head(5).itertuples():
        log.warning("quarantined %s row %d, field %s: %s", rec.source_file, rec.source_row, rec.field, rec.reason)
    return result


def _write_predictions(scored: pd.DataFrame, path: Path, write_csv: bool) -> None:
    """Parquet (and CSV) written whole or not at all: a crashed run never leaves a half-written file that looks
    scored."""
    frame = scored.copy()
    for col in ("key_findings", "key_finding_weights"):
        if col in frame:
            frame[col] = [list(v) for v in frame[col]]
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_atomic(path, buffer.getvalue())
    if write_csv:
        flat = frame.copy()
        for col in ("key_findings", "key_finding_weights"):
            if col in flat:
                flat[col] = [";".join(str(x) for x in v) for v in flat[col]]
        write_atomic(path.with_suffix(".csv"), flat.to_csv(index=False))


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


def ignored_files(input_path: str | Path, files: Sequence[Path]) -> list[str]:
    """Files of the input folder the feed's adapter does not read (another name pattern): said in the summary."""
    folder = Path(input_path)
    if not folder.is_dir():
        return []
    taken = {Path(p).resolve() for p in files}
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.resolve() not in taken)


def _patient_ids(source, path: Path) -> list[str]:
    """The raw patient ids of a file, read cheaply where the adapter allows (a CSV: its id column alone)."""
    column = (getattr(source, "columns", None) or {}).get("patient_id")
    if column and Path(path).suffix.lower() == ".csv":
        ids = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=[column])[column]
    else:
        ids = source.read_file(path).table["patient_id"].fillna("").astype(str)
    return [i.strip() for i in ids if i and i.strip()]


def earlier_ids(files: Sequence[Path], source, pseudonym_key: bytes) -> dict[str, set[str]]:
    """File name -> the pseudonyms of its patients that an earlier file of the batch (name order) already has: the
    same patient in two files is a duplicate in the later one, whatever the engine and whichever files a resumed
    run still has to score. A file that cannot be read claims no id (it is quarantined as a whole)."""
    seen: set[str] = set()
    out: dict[str, set[str]] = {}
    for path in files:
        try:
            ids = {pseudonymise(i, pseudonym_key, source.name) for i in _patient_ids(source, path)}
        except Exception:  # noqa: BLE001 -- process_file says why the file cannot be read
            ids = set()
        out[Path(path).name] = ids & seen
        seen |= ids
    return out


class _Manifest:
    """OUTPUT/manifest.json, rewritten atomically as each file finishes: the record a restarted run resumes from."""

    def __init__(self, output: Path):
        self.path = output / "manifest.json"
        self.data = load_manifest(output)

    def finished(self, r: FileResult) -> None:
        self.data["files"][r.file] = {k: v for k, v in asdict(r).items() if k != "skipped"}
        write_atomic(self.path, json.dumps(self.data, indent=2) + "\n")


def _skipped(entry: dict) -> FileResult:
    known = {f.name for f in fields(FileResult)}
    return FileResult(**{**{k: v for k, v in entry.items() if k in known}, "skipped": True})


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
    ignored = ignored_files(input_path, source.files()) if Path(input_path).is_dir() else []
    manifest = _Manifest(output)
    todo, skipped = [], []
    for path in files:
        digest = file_digest(path)
        seen = manifest.data["files"].get(path.name)
        if (not overwrite and seen and seen.get("digest") == digest and seen.get("output")
                and seen.get("model_version") == scorer.model_version and Path(seen["output"]).exists()):
            skipped.append(_skipped(seen))
        else:
            todo.append((path, digest))
    duplicates = earlier_ids(files, source, pseudonym_key) if todo else {}
    if notes is not None and todo and (engine == "dask" or (n_jobs and n_jobs != 1 and len(todo) > 1)):
        _ = notes.annotator  # built once here and sent with the reader, not rebuilt by every worker's task
    common = dict(source=source, pseudonym_key=pseudonym_key, scorer=scorer, output=output, settings=settings,
                  chunk_size=chunk_size, write_csv=write_csv, threads=threads, notes=notes, notes_mode=notes_mode)
    todo = [(path, digest, duplicates.get(path.name) or set()) for path, digest in todo]
    if engine == "dask":
        results = _run_dask(todo, common, scheduler, n_workers, threads_per_worker, progress, manifest.finished)
    elif engine == "local":
        results = _run_local(todo, common, n_jobs, progress, manifest.finished)
    else:
        raise ValueError(f"engine must be 'local' or 'dask', got {engine!r}")
    summary = summarise(results, skipped, time.perf_counter() - start, scorer, engine, ignored)
    write_atomic(output / "summary.json", json.dumps(summary, indent=2) + "\n")
    for name in ignored:
        log.warning("not read: %s does not match the feed's file pattern", name)
    log.info("scored %d patients of %d files (%d skipped as already scored, %d quarantined as a whole, %d not "
             "matching the pattern), %d rows quarantined, %d anomalies, %.1f s", summary["n_scored"],
             summary["n_files_scored"], summary["n_files_skipped"], summary["n_files_quarantined"],
             summary["n_files_ignored"], summary["n_quarantined"], summary["n_anomalies"], summary["seconds"])
    return summary


def summarise(results: Sequence[FileResult], skipped: Sequence[FileResult], seconds: float, scorer,
              engine: str, ignored: Sequence[str] = ()) -> dict:
    by_field: dict[str, int] = {}
    for r in results:
        for k, v in r.issues_by_field.items():
            by_field[k] = by_field.get(k, 0) + v
    n_scored = sum(r.n_scored for r in results)
    bad_files = [r for r in results if r.quarantined_file]
    return {
        "model": scorer.model_name, "model_version": scorer.model_version, "engine": engine,
        "n_files": len(results) + len(skipped), "n_files_read": len(results) - len(bad_files),
        "n_files_scored": len(results), "n_files_quarantined": len(bad_files),
        "files_quarantined": [{"file": r.file, "reason": r.reason} for r in bad_files],
        "n_files_skipped": len(skipped), "files_skipped": [r.file for r in skipped],
        "n_files_ignored": len(ignored), "files_ignored": list(ignored),
        "n_rows": sum(r.n_rows for r in results), "n_scored": n_scored,
        "n_quarantined": sum(r.n_quarantined for r in results), "quarantined_by_field": by_field,
        "n_anomalies": sum(r.n_anomalies for r in results),
        "seconds": round(seconds, 3), "patients_per_second": round(n_scored / seconds, 1) if seconds > 0 else None,
        "files": [asdict(r) for r in results],
    }


def _run_local(todo, common: dict, n_jobs: int, progress: bool,
               finished: Callable[[FileResult], None]) -> list[FileResult]:
    by_file = {}
    if n_jobs and n_jobs != 1 and len(todo) > 1:
        import os
        from concurrent.futures import as_completed

        from joblib.externals.loky import ProcessPoolExecutor  # spawns without re-running the caller's script

        # one copy of the scorer per worker process, sent once (not with every file): its caches (best-match rows,
        # sorted reference cases) stay warm from one file to the next
        workers = min(len(todo), (os.cpu_count() or 1) if n_jobs < 0 else n_jobs)
        with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(common,)) as pool:
            futures = [pool.submit(_process_in_worker, str(p), d, s) for p, d, s in todo]
            for future in as_completed(futures):
                r = future.result()
                finished(r)  # in this process, as each file ends: the manifest has one writer
                by_file[r.file] = r
        return [by_file[Path(p).name] for p, _, _ in todo]
    bar = _progress(len(todo), "files", enabled=progress and len(todo) > 1)
    results = []
    for path, digest, seen in todo:
        r = process_file(path, digest=digest, seen_ids=seen, progress=progress and len(todo) == 1, **common)
        finished(r)
        results.append(r)
        bar.update(1)
    bar.close()
    return results


_WORKER: dict = {}  # in a worker process of the local engine: the arguments every file shares


def _start_worker(common: dict) -> None:
    _WORKER.update(common)


def _process_in_worker(path: str, digest: str, seen_ids: set[str] | None) -> FileResult:
    return process_file(path, digest=digest, seen_ids=seen_ids, **_WORKER)


def _run_dask(todo, common: dict, scheduler: str | None, n_workers: int, threads_per_worker: int,
              progress: bool, finished: Callable[[FileResult], None]) -> list[FileResult]:
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
        futures = [client.submit(process_file, str(p), digest=d, seen_ids=s, pure=False, **shared, **rest)
                   for p, d, s in todo]
        bar = _progress(len(futures), "files", enabled=progress)
        by_file = {}
        for fut in as_completed(futures):
            r = fut.result()
            finished(r)
            by_file[r.file] = r
            bar.update(1)
        bar.close()
        return [by_file[Path(p).name] for p, _, _ in todo]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def predict_from_config(cfg, input_path: str | Path | None = None, output: str | Path | None = None,
                        model: str | None = None, newest_days: int | None = None, **options) -> dict:
    """`dxlab predict` / the predict stage: the scorer, source adapter and key from the composed config.

    options override serve.batch (engine, n_jobs, scheduler, overwrite, chunk_size, write_csv, progress)."""
    from dxlab.data.notes import feed_notes
    from dxlab.data.pseudonym import key_file, load_key
    from dxlab.serving.scorer import Scorer

    key = load_key(key_file(cfg))  # ingest's key, or stop before loading anything: a new key, new pseudonyms
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
    return predict_folder(input_path, output, scorer, source, key, settings, files=files, **opts)
