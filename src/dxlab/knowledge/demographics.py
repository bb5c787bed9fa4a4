"""What the knowledge says about who has a disease and when it starts: the one place for sex and onset priors.

Every part of dxlab that needs them reads them here: the diagnostic model's likelihood core (sex and onset
likelihood ratios), the simulator (the sex of a simulated patient) and the case readers (an onset class given as
an HPO term). The tables are read off the knowledge tables (`diseases.parquet`: `sex_specific`, `inheritance`,
`onset`), never written twice.

- Sex: P(male | disease). A disease the annotations make sex-specific is that sex with `SEX_SPECIFIC_SHARE`;
  otherwise its modes of inheritance give the share (`MALE_SHARE_BY_INHERITANCE`, the most lopsided one wins when
  a disease has several); otherwise 0.5.
- Onset: the HPO onset terms (`dxlab.knowledge.hpo.ONSET_AGE_RANGES`, the one table of onset ages) coarsened to
  `ONSET_CLASSES`, the classes a case's onset age falls into. A term belongs to every class its age range
  overlaps; antenatal terms (range 0-0) count as congenital: a disease that starts before birth shows at birth.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dxlab.knowledge.hpo import ONSET_AGE_RANGES

# Share of male patients by mode of inheritance.
MALE_SHARE_BY_INHERITANCE: dict[str, float] = {
    "HP:0001450": 0.99,  # Y-linked
    "HP:0001419": 0.85,  # X-linked recessive: mostly affected males (hemizygous)
    "HP:0001417": 0.6,   # X-linked, unspecified
    "HP:0001423": 0.35,  # X-linked dominant: affected females about twice as common
}
SEX_SPECIFIC_SHARE = 0.99  # a sex-specific disease in the other sex: 1 - this (annotations and reports are fuzzy)

# Onset classes: (name, upper bound in years, exclusive); a case's onset age falls in exactly one.
ONSET_CLASSES: tuple[tuple[str, float], ...] = (
    ("congenital", 0.0),  # at birth (0 years exactly, or before)
    ("neonatal", 28 / 365),  # as ONSET_AGE_RANGES spells the neonatal period
    ("infantile", 1.0),
    ("childhood", 5.0),
    ("juvenile", 16.0),
    ("adult", np.inf),
)
ONSET_CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in ONSET_CLASSES)


def male_share(sex_specific: str, inheritance: Iterable[str]) -> float:
    """P(male) for a disease with these annotations (see the module docstring)."""
    if sex_specific == "MALE":
        return SEX_SPECIFIC_SHARE
    if sex_specific == "FEMALE":
        return 1.0 - SEX_SPECIFIC_SHARE
    shares = [MALE_SHARE_BY_INHERITANCE[m] for m in inheritance if m in MALE_SHARE_BY_INHERITANCE]
    return max(shares, key=lambda s: abs(s - 0.5)) if shares else 0.5


def onset_class(years: float | None) -> int | None:
    """Index into ONSET_CLASSES of an onset age in years; None when unknown or invalid."""
    if years is None or not np.isfinite(years) or years < 0:
        return None
    if years == 0:
        return 0
    for i, (_, upper) in enumerate(ONSET_CLASSES[1:], start=1):
        if years < upper:
            return i
    return len(ONSET_CLASSES) - 1


def onset_term_classes(term: str) -> tuple[int, ...]:
    """The onset classes an HPO onset term covers (its age range overlaps them); () for other terms."""
    if term not in ONSET_AGE_RANGES:
        return ()
    lo, hi = ONSET_AGE_RANGES[term]
    if hi <= 0:
        return (0,)
    bounds = [upper for _, upper in ONSET_CLASSES]  # class i covers [bounds[i - 1], bounds[i])
    return tuple(i for i in range(1, len(bounds)) if lo < bounds[i] and hi > bounds[i - 1])


def onset_distribution(terms: Iterable[str], spread: float = 0.1) -> np.ndarray | None:
    """P(onset class | disease) from its onset annotations: the annotated classes share 1 - `spread`, every class
    gets spread / n (annotations and reports are fuzzy); None when the disease has no onset annotation."""
    classes = sorted({c for t in terms for c in onset_term_classes(t)})
    if not classes:
        return None
    dist = np.full(len(ONSET_CLASSES), spread / len(ONSET_CLASSES))
    dist[classes] += (1.0 - spread) / len(classes)
    return dist
