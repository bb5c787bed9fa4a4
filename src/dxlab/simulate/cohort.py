"""Simulate a long-tailed patient cohort from HPO disease annotations.

Each patient of a disease gets findings sampled with the annotated frequencies, then the things that make real
records hard: omissions, imprecise (ancestor) terms, unrelated background findings, explicitly excluded findings,
missing demographics. Age follows the onset annotation, sex the sex-specific annotations and X-linked
inheritance, family history the mode of inheritance. Each patient has a clinical note in a clinician's words
(`NoteWriter`): synonyms and lay words, negations, relatives, and some findings nowhere else. Everything is drawn
from the seed: the coded fields from one generator, each note from its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from dxlab.knowledge import hpo
from dxlab.knowledge.base import Knowledge
from dxlab.knowledge.demographics import male_share

RAW_COLUMNS = ["patient_id", "age", "sex", "family_history", "findings", "excluded_findings", "history",
               "height_cm", "weight_kg", "note", "diagnosis"]


@dataclass
class SimulatorConfig:
    n_diseases: int = 200
    n_patients: int = 6000
    zipf_exponent: float = 1.0
    min_patients_per_disease: int = 2
    min_phenotypes: int = 8
    databases: tuple[str, ...] = ("OMIM", "ORPHA")
    omission_rate: float = 0.15
    imprecision_rate: float = 0.15
    noise_findings_mean: float = 0.8
    excluded_findings_mean: float = 1.5
    min_findings: int = 2
    missing_age_rate: float = 0.04
    missing_sex_rate: float = 0.02
    missing_family_history_rate: float = 0.3
    missing_measurements_rate: float = 0.25
    diagnostic_delay_years: float = 2.0
    default_age_range: tuple[float, float] = (0.0, 70.0)
    onset_age_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    family_history_rates: Mapping[str, float] = field(default_factory=dict)
    default_family_history_rate: float = 0.05
    history_codes: Mapping[str, float] = field(default_factory=dict)
    n_days: int = 30
    start_date: str = "2025-01-01"
    bad_row_rate: float = 0.003
    note_synonym_rate: float = 0.75  # a finding written with one of its synonyms rather than its label
    note_coverage: float = 0.85      # a coded finding (or excluded finding) also written in the note
    note_only_rate: float = 0.0      # a finding written in the note only, not coded (obligate ones and one other
                                     # stay coded); conf/data/hpo_cohort.yaml sets it for the embedded cohort
    seed: int = 42


@dataclass
class Cohort:
    panel: pd.DataFrame  # disease_id, name, primary_system, target_patients
    patients: pd.DataFrame  # RAW_COLUMNS plus day, the findings written only in the note and the injected defect


def select_panel(knowledge: Knowledge, cfg: SimulatorConfig, rng: np.random.Generator) -> pd.DataFrame:
    """A panel of diseases spread over organ systems: round-robin over systems, random within each."""
    diseases = knowledge.diseases
    eligible = diseases[
        diseases["database"].isin(list(cfg.databases))
        & (diseases["n_phenotypes"] >= cfg.min_phenotypes)
        & (diseases["primary_system"] != "")
    ]
    if len(eligible) < cfg.n_diseases:
        raise ValueError(f"only {len(eligible)} diseases have >= {cfg.min_phenotypes} phenotypes; "
                         f"asked for {cfg.n_diseases}")
    by_system = {s: list(rng.permutation(g["disease_id"].to_numpy()))
                 for s, g in eligible.groupby("primary_system", sort=True)}
    chosen: list[str] = []
    while len(chosen) < cfg.n_diseases:
        for system in sorted(by_system, key=lambda s: -len(by_system[s])):
            if by_system[system] and len(chosen) < cfg.n_diseases:
                chosen.append(by_system[system].pop())
    panel = eligible.set_index("disease_id").loc[chosen, ["name", "primary_system"]].reset_index()
    # Long tail: Zipf prevalence over a random ranking of the panel.
    ranks = np.arange(1, len(panel) + 1, dtype=float)
    weights = ranks ** (-cfg.zipf_exponent)
    counts = np.maximum(cfg.min_patients_per_disease, np.round(cfg.n_patients * weights / weights.sum()))
    panel["target_patients"] = counts.astype(int)
    panel["prevalence_rank"] = ranks.astype(int)
    return panel


class _DiseaseModel:
    """What the simulator needs of one disease, precomputed."""

    def __init__(self, disease_id: str, knowledge: Knowledge, ann: pd.DataFrame, row: pd.Series, term_sex: dict):
        self.disease_id = disease_id
        positive = ann[~ann["negated"] & (ann["frequency"] > 0)]
        self.terms = positive["hpo_id"].to_numpy()
        self.freq = positive["frequency"].to_numpy(dtype=float)
        # An annotation applies to one sex when the file says so or when only that sex can have the finding.
        self.sex = np.array([s or term_sex.get(t, "") for s, t in zip(positive["sex"], positive["hpo_id"])])
        self.negated = ann.loc[ann["negated"] | (ann["frequency"] == 0), "hpo_id"].to_numpy()
        self.inheritance = list(row["inheritance"])
        self.onset = list(row["onset"])
        self.sex_specific = row["sex_specific"]
        self.implied = knowledge.propagate(self.terms)


class DrawContext:
    """What `draw_patient` needs beside the disease, built once for a set of diseases: their models, the background
    findings (terms weighted by how many diseases list them, i.e. common, unspecific ones), the findings a clinician
    would check and find absent (the set's frequent findings), the sex of sex-specific terms, the history codes."""

    def __init__(self, knowledge: Knowledge, diseases, history_codes: Mapping[str, float]):
        ann = knowledge.phenotype_annotations(diseases)
        table = knowledge.diseases.set_index("disease_id")
        self.term_sex = dict(zip(knowledge.terms["id"], knowledge.terms["sex"]))
        self.models = {d: _DiseaseModel(d, knowledge, g, table.loc[d], self.term_sex)
                       for d, g in ann.groupby("disease_id") if d in table.index}
        background = knowledge.annotations.loc[knowledge.annotations["aspect"] == "P", "hpo_id"].value_counts()
        background = background[background >= 50]
        self.bg_terms, self.bg_p = background.index.to_numpy(), (background / background.sum()).to_numpy()
        frequent = ann[~ann["negated"] & (ann["frequency"] >= 0.5)]["hpo_id"].unique()
        self.frequent = frequent if len(frequent) else self.bg_terms
        self.history_codes = list(history_codes.items())

    def draw(self, disease_id: str, cfg: "SimulatorConfig", knowledge: Knowledge, rng: np.random.Generator) -> dict:
        return draw_patient(self.models[disease_id], cfg, knowledge, rng, self.bg_terms, self.bg_p, self.frequent,
                            self.term_sex, self.history_codes)


def _imprecise(term: str, knowledge: Knowledge, rng: np.random.Generator) -> str:
    """Replace a term by a parent or grandparent that is still a phenotypic abnormality below the top level."""
    current = term
    for _ in range(int(rng.integers(1, 3))):
        parents = [p for p in knowledge.parents.get(current, []) if p != hpo.PHENOTYPIC_ABNORMALITY
                   and hpo.PHENOTYPIC_ABNORMALITY in knowledge.ancestors.get(p, ())
                   and hpo.PHENOTYPIC_ABNORMALITY not in knowledge.parents.get(p, [])]
        if not parents:
            break
        current = parents[int(rng.integers(len(parents)))]
    return current


def _age(model: _DiseaseModel, cfg: SimulatorConfig, rng: np.random.Generator) -> float:
    ranges = [cfg.onset_age_ranges[o] for o in model.onset if o in cfg.onset_age_ranges]
    if ranges:
        lo, hi = ranges[int(rng.integers(len(ranges)))]
        onset = rng.uniform(lo, hi)
        age = onset + rng.exponential(cfg.diagnostic_delay_years)
    else:
        age = rng.uniform(*cfg.default_age_range)
    return float(np.clip(age, 0.0, 100.0))


def _sex(model: _DiseaseModel, cfg: SimulatorConfig, rng: np.random.Generator) -> str:
    """A sex-specific disease's sex; otherwise male with the knowledge's P(male | modes of inheritance)."""
    if model.sex_specific in ("MALE", "FEMALE"):
        return model.sex_specific[0]
    return "M" if rng.random() < male_share("", model.inheritance) else "F"


def _growth(age: float, sex: str, findings: set[str], rng: np.random.Generator) -> tuple[float, float]:
    """Height and weight from rough growth curves, shifted by stature/weight findings the patient has."""
    a = min(age, 18.0)
    height = 50 + 25 * min(a, 1) + 12 * max(min(a, 2) - 1, 0) + 6.2 * max(a - 2, 0) + (6 if sex == "M" and age > 14 else 0)
    z = rng.normal()
    if "HP:0004322" in findings:  # short stature
        z -= 2.7
    if "HP:0000098" in findings:  # tall stature
        z += 2.7
    height *= 1 + 0.045 * z
    bmi = 16 + 0.4 * max(a - 2, 0) + (4 if age > 18 else 0) + rng.normal(0, 1.5)
    if "HP:0001513" in findings:  # obesity
        bmi += 9
    weight = bmi * (height / 100) ** 2
    return round(float(height), 1), round(float(weight), 1)


# -- the clinical note ---------------------------------------------------------------------------------------
# A note is what a clinician writes, not a list of term labels: findings in the words of the knowledge's synonyms
# (lay words among them: "low muscle tone", "spider fingers"), excluded findings as negations, family history as
# sentences about relatives, and some findings written nowhere else (`simulate_patients` leaves them out of the coded
# findings). Reading it back is the job of dxlab.text; the simulator only writes.
_OPENINGS = ("presenting with {}", "referred for {}", "seen for {}", "evaluated for {}", "brought in with {}")
_FINDINGS = ("On examination, {}.", "{Pron} also has {}.", "Notable for {}.", "There is {}.", "Also noted: {}.",
             "Examination shows {}.")
_NEGATIONS = ("No {}.", "Without {}.", "Negative for {}.", "No evidence of {}.", "{Cap} was ruled out.",
              "Denies {}.")
_FIRST_DEGREE = ("mother", "father", "brother", "sister")
_FAMILY = ("{Poss} {relative} has {}.", "Family history: {relative} with {}.",
           "{Poss} {relative} is similarly affected, with {}.")
_SECOND_DEGREE = ("maternal uncle", "paternal aunt", "maternal grandmother", "paternal grandfather", "cousin")


def _surface(name: str) -> str:
    """A term name as running text: lower case, abbreviations ("GDD", "IgA") kept as written."""
    return " ".join(w if sum(c.isupper() for c in w) >= 2 else w.lower() for w in name.split())


def _writable(synonym: str, label: str) -> bool:
    """Synonyms a clinician might write: no bracketed qualifiers, inverted forms ("delay, global") or numbers."""
    return (synonym.lower() != label.lower() and len(synonym) <= 60 and len(synonym.split()) <= 6
            and not any(c in synonym for c in "(),/[];:0123456789") and "percentile" not in synonym.lower())


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


class NoteWriter:
    """Writes a patient's note from the knowledge's names and synonyms (built once per knowledge and reused)."""

    def __init__(self, knowledge: Knowledge):
        self.names = knowledge.term_names
        self.synonyms = dict(zip(knowledge.terms["id"], knowledge.terms["synonyms"]))
        # a synonym that is another term's name ("central hypotonia" among Hypotonia's) names that other term
        self.labels = {name.lower() for name in self.names.values()}
        self._forms: dict[str, tuple[list[str], list[float]]] = {}

    @classmethod
    def of(cls, knowledge: Knowledge) -> "NoteWriter":
        writer = knowledge._cache.get("note_writer")
        if writer is None:
            writer = knowledge._cache["note_writer"] = cls(knowledge)
        return writer

    def forms(self, term: str) -> tuple[list[str], list[float]]:
        """The synonyms a note may use for a term, lay ones (no word shared with the label) weighted twice."""
        if term not in self._forms:
            label = self.names.get(term, term)
            label_words = set(label.lower().split())
            synonyms = [s for s in dict.fromkeys(self.synonyms.get(term, ()))
                        if _writable(s, label) and s.lower() not in self.labels]
            weights = [2.0 if not label_words & set(s.lower().split()) else 1.0 for s in synonyms]
            self._forms[term] = (synonyms, weights)
        return self._forms[term]

    def phrase(self, term: str, rng: np.random.Generator, synonym_rate: float) -> str:
        synonyms, weights = self.forms(term)
        if synonyms and rng.random() < synonym_rate:
            p = np.asarray(weights) / sum(weights)
            return _surface(synonyms[int(rng.choice(len(synonyms), p=p))])
        return _surface(self.names.get(term, term))

    def write(self, age: float, sex: str | None, findings, excluded, family: float, rng: np.random.Generator,
              synonym_rate: float = 0.75, coverage: float = 0.85, note_only=(), background=()) -> str:
        """The note. Each finding (and excluded finding) is written with chance `coverage`, those of `note_only`
        always; `family` 1.0 adds a first-degree relative with one of the patient's findings; `background` offers
        findings for a second-degree relative now and then (a relative's finding, never the patient's)."""
        pron, poss = {"F": ("she", "her"), "M": ("he", "his")}.get(sex or "", ("the patient", "their"))
        who = {"F": "girl" if age < 16 else "woman", "M": "boy" if age < 16 else "man"}.get(sex or "", "patient")
        age_text = "Infant" if age < 1 else f"{int(age)}-year-old"
        note_only = set(note_only)
        written = [t for t in findings if t in note_only or rng.random() < coverage] or list(findings)[:1]
        phrases = [self.phrase(t, rng, synonym_rate) for t in rng.permutation(np.asarray(written, dtype=object))]
        opening = _OPENINGS[int(rng.integers(len(_OPENINGS)))]
        k = min(len(phrases), int(rng.integers(1, 4)))
        sentences = [f"{age_text} {who} " + opening.format(_join(phrases[:k]) if k else "unspecified complaints") + "."]
        while k < len(phrases):
            n = min(len(phrases) - k, int(rng.integers(1, 4)))
            template = _FINDINGS[int(rng.integers(len(_FINDINGS)))]
            sentences.append(_sentence(template, _join(phrases[k:k + n]), pron, poss))
            k += n
        for term in excluded:
            if rng.random() < coverage:
                template = _NEGATIONS[int(rng.integers(len(_NEGATIONS) - (age < 12)))]  # children do not "deny"
                sentences.append(_sentence(template, self.phrase(term, rng, synonym_rate), pron, poss))
        if family == 1.0 and len(findings):
            relative = _FIRST_DEGREE[int(rng.integers(len(_FIRST_DEGREE)))]
            shared = self.phrase(str(rng.choice(np.asarray(list(findings), dtype=object))), rng, synonym_rate)
            template = _FAMILY[int(rng.integers(len(_FAMILY)))]
            sentences.append(_sentence(template, shared, pron, poss, relative=relative))
        elif len(background) and rng.random() < 0.2:
            relative = _SECOND_DEGREE[int(rng.integers(len(_SECOND_DEGREE)))]
            other = self.phrase(str(background[int(rng.integers(len(background)))]), rng, synonym_rate)
            sentences.append(f"A {relative} had {other}.")
        elif rng.random() < 0.3:
            sentences.append("Family history is unremarkable.")
        return " ".join(sentences)


def _sentence(template: str, text: str, pron: str, poss: str, relative: str = "") -> str:
    out = template.replace("{Pron}", pron.capitalize()).replace("{Poss}", poss.capitalize())
    out = out.replace("{relative}", relative).replace("{Cap}", text[:1].upper() + text[1:])
    out = out.replace("{}", text)
    return out[:1].upper() + out[1:]


def _note(age: float, sex: str, findings: list[str], excluded: list[str], family: float,
          knowledge: Knowledge, rng: np.random.Generator, **options) -> str:
    """A patient's note (see NoteWriter.write for the options)."""
    return NoteWriter.of(knowledge).write(age, sex, findings, excluded, family, rng, **options)


SEX_NAME = {"F": "FEMALE", "M": "MALE"}


def draw_patient(model: "_DiseaseModel", cfg: SimulatorConfig, knowledge: Knowledge, rng: np.random.Generator,
                 bg_terms: np.ndarray, bg_p: np.ndarray, frequent: np.ndarray, term_sex: dict,
                 history_codes: list) -> dict:
    """One patient of a disease before missingness and the note: sex, age, findings, excluded findings, family
    history, history codes, height and weight (and `implied`, the findings propagated up the ontology)."""
    sex = _sex(model, cfg, rng)
    age = _age(model, cfg, rng)
    keep = rng.random(len(model.terms)) < model.freq
    keep &= (model.sex == "") | (model.sex == SEX_NAME[sex])
    obligate = model.freq >= 1.0
    # Omissions never touch obligate findings: by definition every patient shows them.
    keep &= obligate | (rng.random(len(model.terms)) >= cfg.omission_rate)
    if keep.sum() < cfg.min_findings:
        order = np.argsort(-model.freq * rng.uniform(0.8, 1.0, len(model.freq)))
        keep[order[: cfg.min_findings]] = True
    findings = []
    for term, is_obligate in zip(model.terms[keep], obligate[keep]):
        if not is_obligate and rng.random() < cfg.imprecision_rate:
            term = _imprecise(term, knowledge, rng)
        findings.append(term)
    for _ in range(rng.poisson(cfg.noise_findings_mean)):
        findings.append(str(bg_terms[rng.choice(len(bg_terms), p=bg_p)]))
    # No finding only the other sex can have, whatever its origin (annotation, noise, imprecision).
    findings = [t for t in dict.fromkeys(findings) if term_sex.get(t, "") in ("", SEX_NAME[sex])]
    implied = knowledge.propagate(findings)
    n_excluded = rng.poisson(cfg.excluded_findings_mean)
    candidates = list(model.negated) + [t for t in rng.choice(frequent, size=min(len(frequent), 6 * n_excluded + 2),
                                                              replace=False) if t not in model.implied]
    excluded = [t for t in dict.fromkeys(candidates)
                if t not in implied and term_sex.get(t, "") in ("", SEX_NAME[sex])][:n_excluded]
    rate = max([cfg.family_history_rates.get(i, cfg.default_family_history_rate) for i in model.inheritance]
               or [cfg.default_family_history_rate])
    family = 1.0 if rng.random() < rate else 0.0
    history = [code for code, p in history_codes if rng.random() < p * (1 + age / 50)]
    height, weight = _growth(age, sex, implied, rng)
    return {"sex": sex, "age": age, "findings": findings, "excluded": excluded, "family": family,
            "history": history, "height": height, "weight": weight, "implied": implied}


def simulate_patients(knowledge: Knowledge, cfg: SimulatorConfig) -> Cohort:
    rng = np.random.default_rng(cfg.seed)
    panel = select_panel(knowledge, cfg, rng)
    context = DrawContext(knowledge, panel["disease_id"], cfg.history_codes)

    rows = []
    serial = 0
    for disease_id, n_patients in zip(panel["disease_id"], panel["target_patients"]):
        for _ in range(int(n_patients)):
            serial += 1
            draw = context.draw(disease_id, cfg, knowledge, rng)
            sex, age, findings, excluded = draw["sex"], draw["age"], draw["findings"], draw["excluded"]
            family, history, height, weight = draw["family"], draw["history"], draw["height"], draw["weight"]
            # the note has a generator of its own: the coded fields stay what the same seed always drew
            note_rng = np.random.default_rng([cfg.seed, serial])
            # obligate findings stay coded, as they escape omissions: every record of the disease shows them
            obligate = set(context.models[disease_id].terms[context.models[disease_id].freq >= 1.0])
            only = (note_rng.random(len(findings)) < cfg.note_only_rate) & np.array(
                [t not in obligate for t in findings], dtype=bool)
            if len(findings) and only.all():
                only[int(note_rng.integers(len(findings)))] = False
            note_only = [t for t, o in zip(findings, only) if o]
            findings = [t for t, o in zip(findings, only) if not o]
            note = _note(age, sex, findings + note_only, excluded, family, knowledge, note_rng,
                         synonym_rate=cfg.note_synonym_rate, coverage=cfg.note_coverage, note_only=note_only,
                         background=context.bg_terms)
            rows.append({
                "patient_id": f"P{serial:06d}",
                "age": round(age, 1) if rng.random() >= cfg.missing_age_rate else None,
                "sex": sex if rng.random() >= cfg.missing_sex_rate else None,
                "family_history": ("yes" if family else "no") if rng.random() >= cfg.missing_family_history_rate else None,
                "findings": ";".join(findings),
                "excluded_findings": ";".join(excluded),
                "history": ";".join(history),
                "height_cm": height if rng.random() >= cfg.missing_measurements_rate else None,
                "weight_kg": weight if rng.random() >= cfg.missing_measurements_rate else None,
                "note": note,
                "diagnosis": disease_id,
                "note_only_findings": ";".join(note_only),
                "defect": "",
            })
    patients = pd.DataFrame(rows)
    patients = patients.iloc[rng.permutation(len(patients))].reset_index(drop=True)
    start = date.fromisoformat(cfg.start_date)
    patients["day"] = [(start + timedelta(days=int(d))).isoformat() for d in np.sort(rng.integers(0, cfg.n_days, len(patients)))]
    patients = inject_bad_rows(patients, cfg.bad_row_rate, rng)
    return Cohort(panel=panel, patients=patients)


BAD_ROW_KINDS = ("unknown_term", "age_out_of_range", "unknown_sex", "malformed_list", "duplicate_id", "missing_label")


def inject_bad_rows(patients: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """Corrupt a share of rows the way hospital exports go wrong, recording the defect in `defect`."""
    n_bad = int(math.floor(rate * len(patients)))
    if n_bad == 0:
        return patients
    patients = patients.copy()
    targets = rng.choice(np.arange(1, len(patients)), size=n_bad, replace=False)
    for i, idx in enumerate(targets):
        kind = BAD_ROW_KINDS[i % len(BAD_ROW_KINDS)]
        if kind == "unknown_term":
            patients.at[idx, "findings"] = patients.at[idx, "findings"] + ";HP:9999999"
        elif kind == "age_out_of_range":
            patients.at[idx, "age"] = float(rng.choice([-4.0, 187.0]))
        elif kind == "unknown_sex":
            patients.at[idx, "sex"] = "X"
        elif kind == "malformed_list":
            patients.at[idx, "findings"] = "[" + patients.at[idx, "findings"].replace(";", ", ") + "]"
        elif kind == "duplicate_id":
            patients.at[idx, "patient_id"] = patients.at[idx - 1, "patient_id"]
            patients.at[idx, "day"] = patients.at[idx - 1, "day"]
        elif kind == "missing_label":
            patients.at[idx, "diagnosis"] = None
        patients.at[idx, "defect"] = kind
    return patients


def write_daily_files(cohort: Cohort, out_dir: str | Path) -> list[Path]:
    """One CSV per day, as a hospital export would arrive, plus the panel and the injected-defect key."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("patients_*.csv"):
        old.unlink()
    paths = []
    for day, group in cohort.patients.groupby("day", sort=True):
        path = out_dir / f"patients_{day}.csv"
        group[RAW_COLUMNS].to_csv(path, index=False)
        paths.append(path)
    return paths
