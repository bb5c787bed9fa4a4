"""Simulate a long-tailed patient cohort from HPO disease annotations.

Each patient of a disease gets findings sampled with the annotated frequencies, then the things that make real
records hard: omissions, imprecise (ancestor) terms, unrelated background findings, explicitly excluded findings,
missing demographics. Age follows the onset annotation, sex the sex-specific annotations and X-linked
inheritance, family history the mode of inheritance. Everything is drawn from one seeded generator.
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
    seed: int = 42


@dataclass
class Cohort:
    panel: pd.DataFrame  # disease_id, name, primary_system, target_patients
    patients: pd.DataFrame  # RAW_COLUMNS plus day and the injected defect (if any)


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


def _note(age: float, sex: str, findings: list[str], excluded: list[str], family: float,
          knowledge: Knowledge, rng: np.random.Generator) -> str:
    who = {"F": "girl" if age < 16 else "woman", "M": "boy" if age < 16 else "man"}.get(sex, "patient")
    age_text = "infant" if age < 1 else f"{int(age)}-year-old"
    names = [knowledge.term_names.get(t, t).lower() for t in list(rng.permutation(findings))[:3]]
    text = f"{age_text} {who} presenting with " + (", ".join(names) if names else "unspecified complaints") + "."
    if excluded:
        text += f" No {knowledge.term_names.get(excluded[0], excluded[0]).lower()}."
    if family == 1.0:
        text += " A first-degree relative is similarly affected."
    return text


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
            note = _note(age, sex, findings, excluded, family, knowledge, rng)
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
