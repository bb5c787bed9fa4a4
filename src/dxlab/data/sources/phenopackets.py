"""Phenopackets source adapter: published rare-disease case reports.

Input: a ``.jsonl`` file, or a folder searched recursively for ``.jsonl`` and ``.json`` files.

* ``.jsonl`` in the flat format of the shared ``phenopackets/cases.jsonl``: one case per line with ``case_id``,
  ``pmid``, ``cohort``, ``disease_id``, ``disease_label``, ``sex`` (MALE/FEMALE/UNKNOWN_SEX/OTHER_SEX),
  ``age_years``, ``onset_years``, ``observed``, ``excluded``, ``genes``. A line may also hold a whole GA4GH
  phenopacket (recognised by ``subject`` / ``phenotypicFeatures``). ``source_row`` is the line number.
* ``.json``: one GA4GH Phenopacket v2 (``source_row`` 1), a JSON list of phenopackets or a v2 Cohort
  (``members``) (``source_row`` = position in the list, 1-based).

Mapping: patient_id = case_id / subject.id (phenopacket id when the subject has none); age = age_years or
subject.timeAtLastEncounter (ISO-8601 ``age``, midpoint of an ``ageRange``); sex MALE -> "M", FEMALE -> "F",
UNKNOWN_SEX / OTHER_SEX / missing -> None; findings = observed (non-excluded phenotypicFeatures); excluded =
excluded; diagnosis = disease_id (v2: the first OMIM or ORPHA id among the non-excluded ``diseases[].term.id``
then ``interpretations[].diagnosis.disease.id``, else the first id there, e.g. MONDO; spelled as the annotations
spell it: ``canonical_disease_id``); ``measurements["onset_years"]`` = onset_years (v2: the disease's
onset age, else the earliest onset age among observed features; an onset given as an HPO onset class counts
as an age inside that class) when known. genes, pmid, cohort are not kept.

Problems are RowIssues and the row is still returned: malformed JSON line -> ``row``; missing id ->
``patient_id`` (the id falls back to ``f"{file_stem}-{row}"``); bad age -> ``age``; bad onset ->
``measurements``; unknown sex value -> ``sex``; a term id not shaped ``HP:NNNNNNN`` -> ``findings`` /
``excluded`` naming the id (that id is left out, the others kept); missing diagnosis -> ``diagnosis``.
A file that cannot be read, or whose records are not cases at all, raises ValueError naming the file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from dxlab.data.quarantine import describe, name_or_describe
from dxlab.data.schema import IngestResult, RowIssue, make_table
from dxlab.knowledge.hpo import ONSET_AGE_RANGES, PEDIATRIC_ONSET

__all__ = ["PhenopacketsSource", "parse_iso8601_age", "HPO_ID"]

HPO_ID = re.compile(r"HP:\d{7}")
PMID = re.compile(r"PMID[_:\s]*(\d+)|^\s*(\d+)\s*$", re.IGNORECASE)
SEX_MAP: dict[str, str | None] = {
    "MALE": "M",
    "FEMALE": "F",
    "M": "M",
    "F": "F",
    "UNKNOWN_SEX": None,
    "OTHER_SEX": None,
    "UNKNOWN": None,
    "OTHER": None,
}
DISEASE_NAMESPACES = ("OMIM", "ORPHA")  # the disease ids the HPO annotations use, preferred as the diagnosis
FLAT_KEYS: frozenset[str] = frozenset({"case_id", "disease_id", "observed"})
PHENOPACKET_KEYS: frozenset[str] = frozenset({"subject", "phenotypicFeatures"})

_NUM = r"(\d+(?:[.,]\d+)?)"
_ISO_DURATION = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)
# years per unit: Y, M, W, D, then time part H, M, S
_UNIT_YEARS = (1.0, 1.0 / 12.0, 1.0 / 52.18, 1.0 / 365.25, 1.0 / 8766.0, 1.0 / 525_960.0, 1.0 / 31_557_600.0)


def parse_iso8601_age(text: Any) -> float | None:
    """ISO-8601 duration -> years: ``"P3Y6M"`` -> 3.5, ``"P10Y"`` -> 10.0, ``"P2W"`` -> 2/52.18.

    years + months/12 + weeks/52.18 + days/365.25 (+ hours, minutes, seconds). None for anything else
    (not a string, empty ``"P"``, negative or malformed durations).
    """
    if not isinstance(text, str):
        return None
    s = text.strip().upper()
    m = _ISO_DURATION.fullmatch(s)
    if m is None or not any(m.groups()) or s.endswith("T"):
        return None
    return sum(float(g.replace(",", ".")) * unit for g, unit in zip(m.groups(), _UNIT_YEARS) if g)


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


class _Row:
    """Collects the fields and issues of one input record."""

    def __init__(self, source: str, file_name: str, stem: str, row_no: int, issues: list[RowIssue]):
        self.file_name, self.row_no, self.issues = file_name, row_no, issues
        self.fields: dict[str, Any] = {
            "patient_id": f"{stem}-{row_no}",
            "age": float("nan"),
            "sex": None,
            "findings": [],
            "excluded": [],
            "history": [],
            "measurements": {},
            "note": "",
            "diagnosis": None,
            "diagnosis_name": "",
            "source": source,
            "group_id": f"file:{file_name}",  # a publication id replaces it when the record names one
            "source_file": file_name,
            "source_row": row_no,
            "day": "",
        }

    def issue(self, field: str, reason: str) -> None:
        self.issues.append(RowIssue(self.file_name, self.row_no, field, reason))

    # -- field setters that validate ---------------------------------------------------------------------------
    def set_id(self, value: Any) -> None:
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            self.fields["patient_id"] = str(value).strip()
        else:
            self.issue("patient_id", f"missing case id (using {self.fields['patient_id']!r})")

    def set_sex(self, value: Any) -> None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return
        key = value.strip().upper() if isinstance(value, str) else None
        if key not in SEX_MAP:
            self.issue("sex", f"unknown sex ({describe(value)})")
            return
        self.fields["sex"] = SEX_MAP[key]

    def years(self, value: Any, field: str, what: str) -> float | None:
        """A number of years, or an ISO-8601 duration string; None (with an issue when malformed)."""
        if value is None:
            return None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            number = parse_iso8601_age(text) if text[:1].upper() == "P" else _to_float(text)
        else:
            number = None
        if number is None or not math.isfinite(number) or number < 0:
            self.issue(field, f"invalid {what} ({describe(value)})")
            return None
        return number

    def set_age(self, value: Any) -> None:
        years = self.years(value, "age", "age")
        if years is not None:
            self.fields["age"] = years

    def set_onset(self, value: Any) -> None:
        years = self.years(value, "measurements", "onset")
        if years is not None:
            self.fields["measurements"]["onset_years"] = years

    def set_terms(self, field: str, values: Any) -> None:
        if values is None:
            return
        if not isinstance(values, list):
            self.issue(field, f"{field} is not a list ({describe(values)})")
            return
        kept = []
        for term in values:
            if isinstance(term, str) and HPO_ID.fullmatch(term.strip()):
                kept.append(term.strip())
            else:
                self.issue(field, f"bad HPO term id ({name_or_describe(term)})")
        self.fields[field] = list(dict.fromkeys(kept))

    def set_publication(self, value: Any) -> None:
        """The case's publication (its group for cross-validation): 'PMID:<n>' from a pmid field or reference."""
        match = PMID.search(str(value)) if value not in (None, "") else None
        if match:
            self.fields["group_id"] = f"PMID:{match.group(1) or match.group(2)}"

    def set_diagnosis(self, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self.fields["diagnosis"] = canonical_disease_id(value)
        else:
            self.issue("diagnosis", "missing diagnosis" if value in (None, "") else f"bad diagnosis ({describe(value)})")


DISEASE_PREFIXES = {"OMIM": "OMIM", "MIM": "OMIM", "ORPHA": "ORPHA", "ORPHANET": "ORPHA"}
DISEASE_ID = re.compile(r"\s*([A-Za-z]+)\s*[:_]\s*(\S+)\s*")


def canonical_disease_id(value: str) -> str:
    """How the HPO annotations spell a disease id: 'omim:147791', 'MIM:147791', 'OMIM_147791' -> 'OMIM:147791';
    'Orphanet:558', 'ORPHANET_558' -> 'ORPHA:558'. Other vocabularies (MONDO, ...) keep their id, prefix upper-cased."""
    match = DISEASE_ID.fullmatch(value)
    if not match:
        return value.strip()
    prefix, local = match.group(1).upper(), match.group(2)
    return f"{DISEASE_PREFIXES.get(prefix, prefix)}:{local}"


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# An onset given as an HPO onset class (TimeElement ``ontologyClass``, as phenopacket-store writes many onsets):
# the middle of the class's age range. Antenatal classes count as at birth; "Pediatric onset" is too broad to place.
ONSET_CLASS_YEARS: dict[str, float] = {term: (lo + hi) / 2 for term, (lo, hi) in ONSET_AGE_RANGES.items()
                                       if term != PEDIATRIC_ONSET}


def _time_element_years(element: Any, row: _Row, field: str, what: str) -> float | None:
    """Years of a v2 TimeElement: ``age``, ``ageRange`` (midpoint), ``gestationalAge`` (0: before birth) and, for
    onsets, an HPO onset class (``ontologyClass``, see ONSET_CLASS_YEARS); None for other kinds (timestamp)."""
    if not isinstance(element, dict):
        return None
    if isinstance(element.get("gestationalAge"), dict):
        return 0.0
    if what == "onset" and isinstance(element.get("ontologyClass"), dict):
        return ONSET_CLASS_YEARS.get(str(element["ontologyClass"].get("id", "")).strip())
    if isinstance(element.get("age"), dict):
        return row.years(element["age"].get("iso8601duration"), field, what)
    rng = element.get("ageRange")
    if isinstance(rng, dict):
        ends = [
            row.years(rng[k].get("iso8601duration"), field, what)
            for k in ("start", "end")
            if isinstance(rng.get(k), dict)
        ]
        ends = [e for e in ends if e is not None]
        return sum(ends) / len(ends) if ends else None
    return None


def _fill_flat(row: _Row, rec: dict) -> None:
    row.set_id(rec.get("case_id"))
    row.set_publication(rec.get("pmid") or rec.get("case_id"))
    row.set_age(rec.get("age_years"))
    row.set_sex(rec.get("sex"))
    row.set_terms("findings", rec.get("observed"))
    row.set_terms("excluded", rec.get("excluded"))
    row.set_diagnosis(rec.get("disease_id"))
    if isinstance(rec.get("disease_label"), str):
        row.fields["diagnosis_name"] = rec["disease_label"].strip()
    row.set_onset(rec.get("onset_years"))


def _fill_phenopacket(row: _Row, packet: dict) -> None:
    subject = packet.get("subject") if isinstance(packet.get("subject"), dict) else {}
    row.set_id(subject.get("id") or packet.get("id"))
    references = ((packet.get("metaData") or {}).get("externalReferences") or []) if isinstance(
        packet.get("metaData"), dict) else []
    pmids = [r.get("id") for r in references if isinstance(r, dict) and "PMID" in str(r.get("id", "")).upper()]
    row.set_publication(pmids[0] if pmids else (subject.get("id") or packet.get("id")))
    row.set_sex(subject.get("sex"))
    age = _time_element_years(subject.get("timeAtLastEncounter"), row, "age", "age")
    if age is not None:
        row.fields["age"] = age

    observed, excluded, feature_onsets = [], [], []
    features = packet.get("phenotypicFeatures") or []
    if not isinstance(features, list):
        row.issue("findings", "phenotypicFeatures is not a list")
        features = []
    for feature in features:
        kind = feature.get("type") if isinstance(feature, dict) else None
        term = kind.get("id") if isinstance(kind, dict) else None
        is_excluded = isinstance(feature, dict) and feature.get("excluded") is True
        (excluded if is_excluded else observed).append(term)
        if not is_excluded and isinstance(feature, dict):
            onset = _time_element_years(feature.get("onset"), row, "measurements", "onset")
            if onset is not None:
                feature_onsets.append(onset)
    row.set_terms("findings", observed)
    row.set_terms("excluded", excluded)

    candidates = []  # (disease id, its diseases[] entry or None, label), in the documented order
    for disease in packet.get("diseases") or []:
        if isinstance(disease, dict) and disease.get("excluded") is not True:
            if (disease_id := (disease.get("term") or {}).get("id")):
                candidates.append((disease_id, disease, (disease.get("term") or {}).get("label")))
    for interpretation in packet.get("interpretations") or []:
        if isinstance(interpretation, dict):
            term = (interpretation.get("diagnosis") or {}).get("disease") or {}
            if (disease_id := term.get("id")):
                candidates.append((disease_id, None, term.get("label")))
    # a packet may name its disease in several vocabularies (MONDO and OMIM): the HPO annotations use OMIM / ORPHA
    preferred = [c for c in candidates if canonical_disease_id(str(c[0])).split(":")[0] in DISEASE_NAMESPACES]
    diagnosis, entry, label = (preferred or candidates or [(None, None, None)])[0]
    if isinstance(label, str):
        row.fields["diagnosis_name"] = label.strip()
    disease_onset = _time_element_years(entry.get("onset"), row, "measurements", "onset") if entry else None
    row.set_diagnosis(diagnosis)

    onset = disease_onset if disease_onset is not None else (min(feature_onsets) if feature_onsets else None)
    if onset is not None:
        row.fields["measurements"]["onset_years"] = onset


def _kind(record: Any) -> str | None:
    """"flat", "phenopacket" or None (not a case record)."""
    if not isinstance(record, dict):
        return None
    if PHENOPACKET_KEYS & record.keys():
        return "phenopacket"
    if FLAT_KEYS & record.keys():
        return "flat"
    return None


class PhenopacketsSource:
    """Phenopacket cases (flat JSONL or GA4GH v2 JSON) -> canonical rows with raw case ids; `group_id` is the
    case's publication ('PMID:<n>': the `pmid` field, a PMID among the phenopacket's external references, or one
    in its case id as phenopacket-store writes them, 'PMID_123_...'), else 'file:<file name>' (the cases of one file
    are taken to come from one report)."""

    def __init__(self, path: str, name: str = "phenopackets"):
        self.path = Path(path)
        self.name = name

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(
                (
                    p
                    for p in self.path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in (".jsonl", ".json")
                    and not any(part.startswith(".") for part in p.relative_to(self.path).parts)
                ),
                key=lambda p: p.relative_to(self.path).as_posix(),
            )
        if self.path.is_file():
            return [self.path]
        raise FileNotFoundError(f"phenopackets source: {self.path} does not exist")

    def read_file(self, path) -> IngestResult:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read phenopackets file: {exc}") from exc
        if path.suffix.lower() == ".json":
            return self._read_json(path, text)
        return self._read_jsonl(path, text)

    # -- formats ------------------------------------------------------------------------------------------------
    def _convert(self, path: Path, row_no: int, record: Any, issues: list[RowIssue]) -> dict:
        row = _Row(self.name, path.name, _file_stem(path), row_no, issues)
        kind = _kind(record)
        if kind == "phenopacket":
            _fill_phenopacket(row, record)
        elif kind == "flat":
            _fill_flat(row, record)
        else:
            row.issue("row", f"not a case record ({describe(record)})")
        return row.fields

    def _read_jsonl(self, path: Path, text: str) -> IngestResult:
        rows, issues = [], []
        parsed: list[tuple[int, Any]] = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                parsed.append((line_no, exc))
        records = [r for _, r in parsed if not isinstance(r, Exception)]
        if records and not any(_kind(r) for r in records):
            first = records[0]
            keys = sorted(first.keys()) if isinstance(first, dict) else type(first).__name__
            raise ValueError(
                f"{path}: not a phenopackets case file: records have neither {sorted(FLAT_KEYS)} "
                f"nor a GA4GH phenopacket's {sorted(PHENOPACKET_KEYS)} (first record: {keys})"
            )
        for line_no, record in parsed:
            if isinstance(record, Exception):
                row = _Row(self.name, path.name, _file_stem(path), line_no, issues)
                row.issue("row", f"malformed JSON line: {record}")
                rows.append(row.fields)
            else:
                rows.append(self._convert(path, line_no, record, issues))
        return IngestResult(table=make_table(rows), issues=issues)

    def _read_json(self, path: Path, text: str) -> IngestResult:
        issues: list[RowIssue] = []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # one .json file is one phenopacket: a broken file is one bad row, not a failed ingest
            row = _Row(self.name, path.name, _file_stem(path), 1, issues)
            row.issue("row", f"malformed JSON: {exc}")
            return IngestResult(table=make_table([row.fields]), issues=issues)
        if isinstance(data, dict) and isinstance(data.get("members"), list):
            records = data["members"]  # a v2 Cohort
        elif isinstance(data, list):
            records = data
        else:
            records = [data]
        if records and not any(_kind(r) for r in records):
            raise ValueError(
                f"{path}: not a GA4GH phenopacket: no {sorted(PHENOPACKET_KEYS)} "
                f"(nor flat case fields {sorted(FLAT_KEYS)})"
            )
        rows = [self._convert(path, i, record, issues) for i, record in enumerate(records, start=1)]
        return IngestResult(table=make_table(rows), issues=issues)
