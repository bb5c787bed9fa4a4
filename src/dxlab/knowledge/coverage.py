"""How much of a case file the knowledge covers: for each release alone and merged, the share of cases whose
disease is annotated, or failing that seen in another publication's cases, or neither.

A ranker can place a case's disease from the annotations only when the disease is annotated; when it is not, only
the cases of other publications (leave-publication-out) can teach it. `neither` bounds what any model can reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

MERGED = "merged"


def case_coverage(cases: pd.DataFrame, diseases: pd.DataFrame, releases: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per release (alone) and one for the merge: cases annotated / seen in another publication / neither.

    cases: `disease_id` and `pmid` (the publication) per case; diseases: the knowledge `diseases` table with its
    `releases` column (every release listing the disease). A case is `seen_elsewhere` when its disease is not
    annotated but a case of another publication has it; `known` = annotated + seen_elsewhere.
    """
    listed = dict(zip(diseases["disease_id"], diseases["releases"]))
    if releases is None:
        releases = sorted({r for names in listed.values() for r in names})
    publications = cases.groupby("disease_id")["pmid"].agg(lambda p: set(p))
    elsewhere = [len(publications[d] - {p}) > 0 for d, p in zip(cases["disease_id"], cases["pmid"])]
    rows = []
    for release in [*releases, MERGED]:
        annotated = [d in listed and (release == MERGED or release in listed[d]) for d in cases["disease_id"]]
        seen = [not a and e for a, e in zip(annotated, elsewhere)]
        n = len(cases)
        n_annotated, n_seen = sum(annotated), sum(seen)
        rows.append({"knowledge": release, "n_cases": n, "annotated": n_annotated, "seen_elsewhere": n_seen,
                     "known": n_annotated + n_seen, "neither": n - n_annotated - n_seen,
                     "share_annotated": n_annotated / max(n, 1), "share_known": (n_annotated + n_seen) / max(n, 1)})
    return pd.DataFrame(rows)


def coverage_markdown(table: pd.DataFrame, labels: dict[str, str] | None = None, note: str = "") -> str:
    """The coverage table as Markdown (shares of all cases, counts in brackets)."""
    labels = labels or {}
    n = int(table["n_cases"].iloc[0]) if len(table) else 0
    lines = [
        "| knowledge | annotated | not annotated, seen in another publication | annotated or seen | neither |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in table.itertuples():
        def cell(count: int) -> str:
            return f"{count / max(n, 1):.1%} ({count:,})"
        lines.append(f"| {labels.get(row.knowledge, row.knowledge)} | {cell(row.annotated)} | "
                     f"{cell(row.seen_elsewhere)} | {cell(row.known)} | {cell(row.neither)} |")
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")
