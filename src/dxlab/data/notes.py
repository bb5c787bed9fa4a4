"""Clinical notes -> findings, excluded findings and family history, with the span of every mention (issue 16).

One function reads the `note` of canonical rows wherever a patient enters: ingest (every source), batch prediction
(`dxlab predict`, the same adapters), monitoring and the API. Per row, the annotator (`dxlab.text`) finds the
mentions of HPO terms with their assertion, and

- `note_mentions` keeps every mention: {"start", "end", "text", "hpo_id", "name", "assertion"} (+ "relative" for a
  relative's finding), so a person can see what was read and where;
- mode `merge` adds the note's findings (present for the patient) and excluded findings (negated) to the coded ones;
  `replace` takes them from the note alone (rows without a note keep their coded ones); `ignore` reads nothing.
  Coded values win a conflict (a coded finding the note negates stays a finding, and the note's negation is
  dropped; a finding read below a coded excluded one is dropped); a negation of a finding's ancestor ("no seizures"
  beside febrile seizures) contradicts it and is dropped; a finding read that is an ancestor of another finding
  (coded or read) is implied by it and not added; uncertain mentions and relatives' findings never become
  findings; only terms of the configured branches (default: phenotypic abnormalities, not modes of inheritance or
  onset) become findings;
- family history: when the coded value is unknown, 1.0 if the note gives a first-degree relative a finding.

A note the annotator cannot read (binary, too long: `TextError`) is a problem of that row, returned with its
position so that ingest and batch quarantine the row (file, row, field `note`) and the API answers 422. The reason
names what is wrong with the text, never its content; nothing here logs a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from dxlab.data.schema import IngestResult, RowIssue

NOTE_MODES = ("merge", "replace", "ignore")
DEFAULT_MODE = "merge"
PHENOTYPE_BRANCHES = ("phenotype",)


@dataclass
class NotesRead:
    """What `read_notes` returns: the table with the notes read into it, the rows whose note could not be read
    ((position in the table, reason)), and counts (never text) for the stage metrics."""

    table: pd.DataFrame
    problems: list[tuple[int, str]] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


def mention_record(mention) -> dict:
    """A mention as the canonical table and the API show it."""
    out = {"start": int(mention.start), "end": int(mention.end), "text": mention.text, "hpo_id": mention.hpo_id,
           "name": mention.label, "assertion": mention.assertion}
    if mention.relative:
        out["relative"] = mention.relative
    return out


def has_note(value) -> bool:
    """A note worth reading: non-empty text (bytes too: the annotator says whether they are text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not isinstance(value, str) or bool(value.strip())


def check_mode(mode: str) -> str:
    if mode not in NOTE_MODES:
        raise ValueError(f"notes mode must be one of {NOTE_MODES}, got {mode!r}")
    return mode


def read_notes(table: pd.DataFrame, annotator, mode: str = DEFAULT_MODE,
               branches: Sequence[str] = PHENOTYPE_BRANCHES) -> NotesRead:
    """Read the `note` of every row into findings, excluded findings and family history (see the module doc).

    Returns a copy of the table with `note_mentions` set for every row (empty without a note or in mode `ignore`).
    """
    from dxlab.text import TextError, patient_fields
    from dxlab.text.annotate import BRANCHES

    check_mode(mode)
    out = table.copy()
    n = len(out)
    notes = list(out["note"]) if "note" in out else [""] * n
    mentions_col: list[list[dict]] = [[] for _ in range(n)]
    counts = {"notes": 0, "notes_read": 0, "notes_unreadable": 0, "mentions": 0, "findings_added": 0,
              "excluded_added": 0, "family_history_set": 0}
    if mode == "ignore" or not any(has_note(v) for v in notes):
        out["note_mentions"] = mentions_col
        return NotesRead(out, [], counts)
    roots = [BRANCHES[b] for b in branches]
    ancestors = annotator.ancestors_

    def in_branches(term: str) -> bool:
        return any(r in ancestors.get(term, ()) for r in roots)

    findings = [list(v) for v in out["findings"]]
    excluded = [list(v) for v in out["excluded"]]
    family = list(pd.to_numeric(out["family_history"], errors="coerce")) if "family_history" in out else [math.nan] * n
    problems = []
    for i, note in enumerate(notes):
        if not has_note(note):
            continue
        counts["notes"] += 1
        try:
            mentions = annotator.annotate(note)
        except TextError as err:
            problems.append((i, f"note cannot be read: {err}"))
            counts["notes_unreadable"] += 1
            continue
        counts["notes_read"] += 1
        counts["mentions"] += len(mentions)
        mentions_col[i] = [mention_record(m) for m in mentions]
        read = patient_fields(mentions)
        present = [t for t in read["findings"] if in_branches(t)]
        present = most_specific(present, [*present, *([] if mode == "replace" else findings[i])], ancestors)
        negated = [t for t in read["excluded"] if in_branches(t)]
        coded_findings, coded_excluded = set(findings[i]), set(excluded[i])
        if mode == "replace":
            findings[i] = present
            excluded[i] = [t for t in negated if not implied_by(t, present, ancestors)]
        else:
            findings[i] = findings[i] + [t for t in present if t not in coded_findings
                                         and not excluded_above(t, coded_excluded, ancestors)]
            excluded[i] = excluded[i] + [t for t in negated if t not in coded_excluded
                                         and not implied_by(t, findings[i], ancestors)]
        counts["findings_added"] += len(set(findings[i]) - coded_findings)
        counts["excluded_added"] += len(set(excluded[i]) - coded_excluded)
        if not (family[i] == family[i]) and read["family_history"] == 1.0:  # unknown -> a relative is affected
            family[i] = 1.0
            counts["family_history_set"] += 1
    out["findings"] = findings
    out["excluded"] = excluded
    out["family_history"] = [float(v) for v in family]
    out["note_mentions"] = mentions_col
    return NotesRead(out, problems, counts)


def most_specific(terms, among, ancestors) -> list[str]:
    """The terms that are no ancestor of another term of `among`: "seizures" beside "febrile seizures" (coded or read)
    says nothing more, and would count the same evidence twice in the likelihood."""
    return [t for t in terms if not any(t != o and t in ancestors.get(o, ()) for o in among)]


def implied_by(term: str, findings, ancestors) -> bool:
    """A negation the findings contradict: the term is one of them or an ancestor of one ("no seizures" beside
    febrile seizures is a misreading, not a fact: the note's negation is dropped; a narrower negation stays)."""
    return any(term == f or term in ancestors.get(f, ()) for f in findings)


def excluded_above(term: str, excluded, ancestors) -> bool:
    """A finding read in the note that a coded excluded finding rules out (the term or one of its ancestors)."""
    found = ancestors.get(term, ())
    return any(e == term or e in found for e in excluded)


class NoteReader:
    """An annotator for notes, built on first use by `factory` (a picklable callable) unless given: a run whose
    notes are all empty (case reports, DDXPlus) never builds one, and batch workers receive the reader as it is."""

    def __init__(self, annotator=None, factory: Callable[[], object] | None = None,
                 branches: Sequence[str] = PHENOTYPE_BRANCHES):
        if annotator is None and factory is None:
            raise ValueError("NoteReader needs an annotator or a factory that builds one")
        self._annotator = annotator
        self.factory = factory
        self.branches = tuple(branches)

    @property
    def annotator(self):
        if self._annotator is None:
            self._annotator = self.factory()
        return self._annotator

    def read(self, table: pd.DataFrame, mode: str = DEFAULT_MODE) -> NotesRead:
        notes = table["note"] if "note" in table else ()
        if mode == "ignore" or not any(has_note(v) for v in notes):  # no annotator needed
            out = table.copy()
            out["note_mentions"] = [[] for _ in range(len(out))]
            return NotesRead(out, [], {})
        return read_notes(table, self.annotator, mode, self.branches)

    def read_result(self, result: IngestResult, mode: str = DEFAULT_MODE) -> tuple[IngestResult, dict]:
        """An adapter's result with its notes read; an unreadable note becomes a RowIssue of the row (field
        `note`), so validation quarantines it with its file and row."""
        done = self.read(result.table, mode)
        issues = list(result.issues)
        for i, reason in done.problems:
            row = done.table.iloc[i]
            issues.append(RowIssue(str(row["source_file"]), int(row["source_row"]), "note", reason,
                                   source=str(row.get("source", "") or "")))
        return IngestResult(done.table, issues), done.counts


def _build(text_cfg, knowledge_dir: str | None, model: str | None, learned: bool):
    from dxlab.text.commands import build_annotator

    return build_annotator(cfg=text_cfg, knowledge_dir=knowledge_dir, model=model, corpora=None if learned else [])


class _Factory:
    """Picklable: builds the configured annotator (see `note_reader`)."""

    def __init__(self, text_cfg, knowledge_dir: str | None, model: str | None, learned: bool):
        from omegaconf import OmegaConf

        self.text_cfg = OmegaConf.create(OmegaConf.to_container(text_cfg, resolve=True))
        self.knowledge_dir, self.model, self.learned = knowledge_dir, model, learned

    def __call__(self):
        return _build(self.text_cfg, self.knowledge_dir, self.model, self.learned)


def note_reader(cfg) -> NoteReader:
    """The reader the composed config describes: the `text` group's annotator on `paths.knowledge`, with learned
    parts only when `text.notes.learned` (they train on corpora outside the project), or the saved annotator
    `text.notes.model`."""
    settings = cfg.text.get("notes") or {}
    factory = _Factory(cfg.text, str(cfg.paths.knowledge), settings.get("model"), bool(settings.get("learned", False)))
    return NoteReader(factory=factory, branches=tuple(settings.get("branches") or PHENOTYPE_BRANCHES))


def source_note_mode(entry) -> str:
    """`data.sources.<name>.notes.mode` (default merge)."""
    notes = entry.get("notes") if entry is not None else None
    return check_mode(str((notes or {}).get("mode", DEFAULT_MODE)))


def feed_notes(cfg) -> tuple[NoteReader | None, str]:
    """(reader, mode) for the production feed (`data.feed`): batch prediction and monitoring read its notes as
    ingest does. No reader when the mode is `ignore` or the vocabulary is not HPO (a source of other codes)."""
    from dxlab.data.sources import feed_settings

    if cfg.data.get("vocabulary", "hpo") != "hpo":
        return None, "ignore"
    mode = source_note_mode(feed_settings(cfg))
    return (note_reader(cfg) if mode != "ignore" else None), mode
