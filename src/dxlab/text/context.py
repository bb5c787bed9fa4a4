"""Assertion of each mention, ConText-style (Harkema et al. 2009): trigger phrases open a scope forwards or
backwards within their sentence; the scope ends at the sentence end, at a terminator ("but", "however", ";") or
after `window` words. A mention inside a scope takes its trigger's kind; a trigger inside a mention (the "absent" of
"absent speech") does not count. Kinds, strongest first: family (the finding is a relative's), negated, uncertain
(possible, suspected, to rule out, hypothetical "if"). Pseudo-triggers ("not only", "no change", "mother reports")
block the trigger they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from dxlab.text.normalise import Token

PRESENT, NEGATED, UNCERTAIN, FAMILY = "present", "negated", "uncertain", "family"
ASSERTIONS = (PRESENT, NEGATED, UNCERTAIN, FAMILY)

# (phrase, kind, direction): forward triggers scope over the words after them, backward ones over those before.
_NEGATION_FORWARD = (
    "no", "not", "without", "denies", "denied", "deny", "denying", "negative for", "free of", "no evidence of",
    "no sign of", "no signs of", "no history of", "no symptoms of", "never", "nor", "neither", "did not have",
    "does not have", "do not have", "has not had", "have not had", "had no", "has no", "have no", "ruled out",
    "rules out", "fails to reveal", "failed to reveal", "did not show", "does not show", "did not reveal",
    "did not develop", "never developed", "never had", "absence of any", "unremarkable for", "resolution of",
    "non", "not have", "lack of any", "no further", "no more",
)
_NEGATION_BACKWARD = (
    "ruled out", "was ruled out", "were ruled out", "has been ruled out", "have been ruled out", "excluded",
    "was excluded", "were excluded", "has been excluded", "not present", "not seen", "not observed", "not found",
    "not detected", "not noted", "not identified", "not apparent", "not evident", "was negative", "were negative",
    "is negative", "are negative", "was denied", "were denied", "is denied", "not reported", "were not",
    "was not", "is not", "are not", "did not occur", "never occurred", "resolved", "has resolved",
)
_UNCERTAIN_FORWARD = (
    "possible", "possibly", "probable", "probably", "suspected", "suspect", "suspicious for", "suspicion of",
    "suspicion for", "questionable", "question of", "may have", "might have", "could have", "cannot exclude",
    "can not exclude", "cannot rule out", "can not rule out", "rule out", "r o", "evaluate for", "evaluation for",
    "to exclude", "to rule out", "concern for", "concerning for", "worrisome for", "differential diagnosis",
    "if", "in case of", "should he develop", "should she develop", "at risk for", "at risk of", "risk of",
    "risk for", "presumed", "presumably", "unclear if", "uncertain if", "unclear whether", "whether", "unless",
    "screen for", "screening for", "monitor for", "monitored for", "watch for", "likely",
)
_UNCERTAIN_BACKWARD = (
    "is suspected", "was suspected", "were suspected", "are suspected", "cannot be excluded",
    "could not be excluded", "can not be excluded", "not excluded", "cannot be ruled out", "could not be ruled out",
    "can not be ruled out", "is possible", "was possible", "is likely", "is questionable", "is uncertain",
    "was uncertain", "is unclear", "was unclear", "is not excluded", "to be excluded", "to be ruled out",
)
_FAMILY_FORWARD = ("family history of", "family history", "family hx of", "fhx of", "fhx", "fh of",
                   "runs in the family")
_PSEUDO = (
    "not only", "no change", "no increase", "no significant change", "not necessarily", "no longer", "not certain",
    "without difficulty", "gram negative", "not cause", "not caused", "no further", "not all", "not always",
    "if any", "whether or not", "no known", "not known", "not clear", "not yet", "not been reported",
    "not previously", "not been described", "not described", "not be", "non significant",
)
# Words that end any scope, and words that end a negation or uncertainty scope (a new clause about the patient).
_TERMINATE = frozenset("but however although though except apart aside whereas while yet nevertheless "
                       "nonetheless".split())
_TERMINATE_NOT_FAMILY = frozenset(
    "which who presents presented presenting shows showed demonstrates demonstrated reveals revealed developed "
    "develops has had reports reported complains complained exhibits exhibited displays displayed".split()
)
# A relative opens a family scope when a possessive or kin word stands before it, or a verb of having after it.
RELATIVES = frozenset(
    "mother father parent parents brother brothers sister sisters sibling siblings sib sibs son sons daughter "
    "daughters uncle uncles aunt aunts cousin cousins grandmother grandmothers grandfather grandfathers "
    "grandparent grandparents nephew nephews niece nieces twin relative relatives mom dad grandson granddaughter "
    "grandchild grandchildren halfbrother halfsister stepbrother stepsister".split()
)
FIRST_DEGREE = frozenset(
    "mother father parent parents brother brothers sister sisters sibling siblings sib sibs son sons daughter "
    "daughters twin mom dad".split()
)
_KIN_BEFORE = frozenset("his her their patient's patients proband's probands maternal paternal whose my".split())
_KIN_QUALIFIERS = frozenset("maternal paternal older younger elder half great first second degree "
                            "twin fraternal identical biological".split())
_HAVING_AFTER = frozenset("had has have with died suffered suffers was were is are also both developed "
                          "carries carried presented".split())
# After a relative: the relative is the source of information, not the one with the finding.
_FAMILY_PSEUDO_AFTER = frozenset("reports reported states stated notes noted noticed says said describes described "
                                 "brought observed worried concerned complains complained thinks thought feels "
                                 "felt denies denied".split())
# Within a family scope, a new subject gives the finding back to the patient.
_FAMILY_TERMINATE = frozenset("he she patient proband boy girl child infant himself herself baby".split())
_WINDOW = {NEGATED: 8, UNCERTAIN: 8, FAMILY: 12}


@dataclass(frozen=True, slots=True)
class Trigger:
    start: int  # word index within the sentence (inclusive)
    end: int  # exclusive
    kind: str  # negated | uncertain | family | pseudo
    forward: bool
    relative: str = ""


def _phrases(items, kind, forward):
    return [(tuple(p.split()), kind, forward) for p in items]


_TRIGGERS = sorted(
    _phrases(_NEGATION_FORWARD, NEGATED, True) + _phrases(_NEGATION_BACKWARD, NEGATED, False)
    + _phrases(_UNCERTAIN_FORWARD, UNCERTAIN, True) + _phrases(_UNCERTAIN_BACKWARD, UNCERTAIN, False)
    + _phrases(_FAMILY_FORWARD, FAMILY, True) + _phrases(_PSEUDO, "pseudo", True),
    key=lambda t: -len(t[0]),
)
_FIRST_WORDS = frozenset(t[0][0] for t in _TRIGGERS)


def find_triggers(words: list[str]) -> list[Trigger]:
    """Triggers in a sentence's lower-cased words; the longest phrase wins where several start at one word."""
    found: list[Trigger] = []
    taken = [False] * len(words)
    for i, word in enumerate(words):
        if word not in _FIRST_WORDS or taken[i]:
            continue
        for phrase, kind, forward in _TRIGGERS:
            n = len(phrase)
            if tuple(words[i:i + n]) == phrase:
                found.append(Trigger(i, i + n, kind, forward))
                for k in range(i, i + n):
                    taken[k] = True
                break
    found.extend(_relative_triggers(words))
    # a pseudo-trigger cancels the triggers it overlaps
    pseudo = [t for t in found if t.kind == "pseudo"]
    return [t for t in found if t.kind != "pseudo"
            and not any(p.start <= t.start < p.end or t.start <= p.start < t.end for p in pseudo)]


def _relative_triggers(words: list[str]) -> list[Trigger]:
    out = []
    for i, word in enumerate(words):
        if word not in RELATIVES:
            continue
        start = i
        while start > 0 and words[start - 1] in _KIN_QUALIFIERS:
            start -= 1
        before = words[start - 1] if start > 0 else ""
        after = words[i + 1] if i + 1 < len(words) else ""
        if after in _FAMILY_PSEUDO_AFTER:
            continue
        relative = " ".join(words[start:i + 1])
        possessed = before in _KIN_BEFORE or words[start] in ("maternal", "paternal")
        if possessed or after in _HAVING_AFTER:
            out.append(Trigger(max(start - 1, 0) if before in _KIN_BEFORE else start, i + 1, FAMILY, True,
                               relative))
            # "... seizures in his mother" / "as did her brother": the relative also scopes backwards
            if possessed and start >= 2 and words[start - 2] in ("in", "did", "and", "by"):
                out.append(Trigger(start - 2, i + 1, FAMILY, False, relative))
    return out


def assert_mentions(sentence_words: list[Token], spans: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """(assertion, relative) for each mention, given as (first word, last word + 1) indices into the sentence."""
    words = [t.text.lower() for t in sentence_words]
    triggers = find_triggers(words)
    out = []
    for first, last in spans:
        best, relative = PRESENT, ""
        for trig in triggers:
            if trig.start < last and first < trig.end:
                continue  # the trigger is part of the mention
            if not _in_scope(words, trig, first, last):
                continue
            if _stronger(trig.kind, best):
                best, relative = trig.kind, trig.relative or ("family" if trig.kind == FAMILY else "")
        out.append((best, relative))
    return out


_ORDER = {PRESENT: 0, UNCERTAIN: 1, NEGATED: 2, FAMILY: 3}


def _stronger(kind: str, than: str) -> bool:
    return _ORDER[kind] > _ORDER[than]


def _in_scope(words: list[str], trig: Trigger, first: int, last: int) -> bool:
    window = _WINDOW[trig.kind]
    if trig.forward:
        if first < trig.end or first - trig.end > window:
            return False
        between = words[trig.end:first]
    else:
        if last > trig.start or trig.start - last > window:
            return False
        between = words[last:trig.start]
    if any(w in _TERMINATE for w in between):
        return False
    stop = _FAMILY_TERMINATE if trig.kind == FAMILY else _TERMINATE_NOT_FAMILY
    return not any(w in stop for w in between)
