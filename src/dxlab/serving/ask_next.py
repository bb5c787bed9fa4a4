"""What to ask next: the findings not yet recorded that best separate the leading candidate diseases.

For a patient and the top-k diseases of its differential (probabilities renormalised over them: the posterior
pi), a finding t not yet recorded is worth its expected information gain

    IG(t) = H(pi) - [P(yes) H(pi | yes) + P(no) H(pi | no)],   P(yes) = sum_d pi_d P(t | d),
    pi(d | yes) ~ pi_d P(t | d),   pi(d | no) ~ pi_d (1 - P(t | d)),

the entropy of the differential the answer is expected to remove (in bits). A finding every leading disease has
(or none has) removes nothing; one that half of the probability mass has and half lacks removes up to one bit.

P(t | d) is the model's own: the diagnostic model's likelihood core (`dxlab.models.likelihood.LikelihoodCore`)
scores an observed finding by its best-match log likelihood ratio log P(t | d) / P(t) (`pair_log_lr`: exact
match, or a penalised ancestor, or the floor of an unexplained finding) against the background P(t) (the core's
`background_`), so P(t | d) = exp(log LR) * P(t) -- the same number that moves the score when the clinician
records the finding -- capped at the core's `max_frequency`. No second likelihood is written here.

Candidates: the most specific terms in the profiles of the leading diseases (the core's sorted (disease, term)
look-up, read by disease ranges; a profile's terms that none of its other terms implies), restricted to phenotype
terms; minus what is recorded, the terms a present finding already
implies (its ancestors) and those an excluded finding rules out (its descendants). The five best are chosen
greedily, skipping a term that is an ancestor or a descendant of one already chosen (asking "Abnormality of the
lens" after "Ectopia lentis" repeats the question).

Models without a likelihood core (the zoo's) get no suggestions (an empty list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

HAS_IT = 0.05  # a leading disease "has" a finding when P(t | d) is at least this (a very rare annotation is ~0.03)


def entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits along the last axis (0 log 0 = 0)."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=-1)


def information_gain(prior: np.ndarray, p_yes: np.ndarray) -> np.ndarray:
    """Expected information gain (bits) of asking each finding: prior over k diseases, p_yes findings x k
    (P(finding | disease)). See the module docstring."""
    prior = np.asarray(prior, dtype=float) / np.sum(prior)
    p_yes = np.clip(np.asarray(p_yes, dtype=float), 0.0, 1.0)
    joint_yes, joint_no = prior[None, :] * p_yes, prior[None, :] * (1 - p_yes)
    yes, no = joint_yes.sum(axis=1), joint_no.sum(axis=1)
    after_yes = entropy(joint_yes / np.maximum(yes, 1e-300)[:, None])
    after_no = entropy(joint_no / np.maximum(no, 1e-300)[:, None])
    return np.maximum(entropy(prior) - yes * after_yes - no * after_no, 0.0)


class NextQuestions:
    """Suggestions for one served model (built once per model: the phenotype mask over its terms)."""

    def __init__(self, model, names: Mapping[str, str] | None = None, phenotype_root: str = "HP:0000118"):
        self.core = getattr(model, "core_", None)
        self.classes = np.asarray(getattr(model, "classes_", []), dtype=object).astype(str)
        self.term_names = dict(getattr(model, "term_names_", {}) or {})
        self.disease_names = dict(names or getattr(model, "disease_names_", {}) or {})
        self.phenotype = self._phenotype_mask(phenotype_root) if self.core is not None else None

    @property
    def available(self) -> bool:
        return self.core is not None

    def _phenotype_mask(self, root: str) -> np.ndarray:
        encoder = self.core.encoder_
        anc = encoder.ancestors.tocsc()
        mask = np.zeros(encoder.n_terms, dtype=bool)
        j = encoder.index.get(root)
        if j is None:
            return ~mask
        mask[anc.indices[anc.indptr[j]:anc.indptr[j + 1]]] = True  # the rows whose ancestors include the root
        mask[j] = False
        return mask

    # -- candidates ------------------------------------------------------------------------------------------------
    def _ancestors(self, term: int) -> np.ndarray:
        anc = self.core.encoder_.ancestors
        return anc.indices[anc.indptr[term]:anc.indptr[term + 1]]

    def _recorded(self, findings: Sequence[str], excluded: Sequence[str]) -> tuple[set[int], set[int]]:
        """Term indices a question would repeat: the present findings and what they imply; the excluded ones."""
        encoder = self.core.encoder_
        present = [encoder.index[t] for t in map(encoder.normalise, findings) if t is not None]
        absent = {encoder.index[t] for t in map(encoder.normalise, excluded) if t is not None}
        implied = {int(a) for q in present for a in self._ancestors(q)}
        return implied, absent

    def candidates(self, diseases: np.ndarray, findings: Sequence[str], excluded: Sequence[str]) -> np.ndarray:
        """The most specific phenotype terms of the profiles of `diseases`, not recorded, not implied, not ruled
        out."""
        keys, _ = self.core._lookup()  # (disease * n_terms + term), sorted: one range per disease
        n_terms = self.core.encoder_.n_terms
        lo = np.searchsorted(keys, diseases.astype(np.int64) * n_terms)
        hi = np.searchsorted(keys, (diseases.astype(np.int64) + 1) * n_terms)
        terms = np.unique(np.concatenate([self._specific(keys[a:b] % n_terms) for a, b in zip(lo, hi)]
                                         or [np.empty(0, np.int64)]))
        terms = terms[self.phenotype[terms]]
        implied, absent = self._recorded(findings, excluded)
        if absent:  # a descendant of an excluded finding is excluded too
            ruled_out = np.asarray([bool(absent.intersection(self._ancestors(t).tolist())) for t in terms], dtype=bool)
            terms = terms[~ruled_out]
        return terms[~np.isin(terms, list(implied | absent))]

    def _specific(self, profile_terms: np.ndarray) -> np.ndarray:
        """The terms of one disease's profile that no other term of it implies: the profile is closed upwards
        (noisy-OR), and its leaves are the findings annotated or reported, the concrete questions; their
        ancestors ("Abnormal nervous system physiology") ask nothing a clinician would ask."""
        members = set(profile_terms.tolist())
        implied = {int(a) for t in members for a in self._ancestors(t) if a != t}
        return np.asarray(sorted(members - implied), dtype=np.int64)

    # -- scoring -----------------------------------------------------------------------------------------------------
    def probabilities(self, terms: np.ndarray, diseases: np.ndarray) -> np.ndarray:
        """terms x diseases: P(t | d) = exp(best-match log LR) * P(t), the core's own (module docstring)."""
        core = self.core
        log_lr = core.pair_log_lr(np.repeat(terms, len(diseases)), np.tile(diseases, len(terms)))
        p = np.exp(log_lr.astype(float).reshape(len(terms), len(diseases))) * core.background_[terms][:, None]
        return np.minimum(p, core.max_frequency)

    def suggest(self, findings: Sequence[str], excluded: Sequence[str], disease_ids: Sequence[str],
                probabilities: Sequence[float], n: int = 5) -> list[dict]:
        """Up to n findings by expected information gain over the given diseases (the top of the differential)."""
        if not self.available or n <= 0 or len(disease_ids) < 2:
            return []
        column = {d: i for i, d in enumerate(self.classes)}
        kept = [(column[d], p) for d, p in zip(disease_ids, probabilities) if d in column and p > 0]
        if len(kept) < 2:
            return []
        diseases = np.asarray([c for c, _ in kept], dtype=np.int64)
        prior = np.asarray([p for _, p in kept], dtype=float)
        terms = self.candidates(diseases, findings, excluded)
        if not len(terms):
            return []
        p_yes = self.probabilities(terms, diseases)
        gain = information_gain(prior, p_yes)
        return [self._entry(int(terms[i]), float(gain[i]), p_yes[i], diseases)
                for i in self._diverse(terms, gain, n)]

    def _diverse(self, terms: np.ndarray, gain: np.ndarray, n: int) -> list[int]:
        """The best n by gain, skipping a term that is an ancestor or a descendant of one already chosen."""
        chosen: list[int] = []
        lines: list[set[int]] = []
        for i in np.argsort(-gain, kind="stable"):
            if gain[i] <= 1e-6 or len(chosen) >= n:
                break
            line = set(self._ancestors(int(terms[i])).tolist())
            if any(int(terms[i]) in other or int(terms[c]) in line for c, other in zip(chosen, lines)):
                continue
            chosen.append(int(i))
            lines.append(line)
        return chosen

    def _entry(self, term: int, gain: float, p_yes: np.ndarray, diseases: np.ndarray) -> dict:
        hpo_id = str(self.core.encoder_.term_ids[term])
        having = sorted(((float(p), int(d)) for p, d in zip(p_yes, diseases) if p >= HAS_IT), reverse=True)
        return {"hpo_id": hpo_id, "name": self.term_names.get(hpo_id, ""), "expected_gain": round(gain, 4),
                "diseases": [{"disease_id": str(self.classes[d]), "frequency": round(p, 3),
                              "name": self.disease_names.get(str(self.classes[d]), "")} for p, d in having]}
