"""The dictionary of HPO names: every label and synonym of the pinned release, keyed by its bag of normalised words.

A name is keyed twice, by the sorted multiset of its content words in exact form and in root form (see
`normalise`), so "Hypoplasia of the nails", "nail hypoplasia" and "hypoplastic nails" share one root key. Names that
look like abbreviations ("VSD", "IUGR") are matched case-sensitively on the written token only. Generated variants
(a name without its parenthesis, or without words texts leave out) and names learned from annotated text
(`learn.py`) are added with a lower rank: a key keeps the entries of its best rank only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from dxlab.text.normalise import root_form, tokenize

# Ranks of an entry's source: the lower, the more trusted.
LABEL, SYNONYM, VARIANT, LEARNED = 0, 1, 2, 3
SOURCES = ("label", "synonym", "variant", "learned")

# Words that never decide a match (they may sit inside a matched span).
STOPWORDS = frozenset(
    "a an the of in on at to for with by from and or as is are was were be been being that which this these those "
    "its their his her he she they it both either also into than then there has have had any some such".split()
)
# Function words a finding's words never straddle ("dysplasia as a diaphyseal ..." is no name); the other stopwords
# may sit inside one ("hypoplasia of the nails", "toes were absent").
BREAKERS = frozenset("as that which this these those its their his her he she they it has have had any some such "
                     "also than then there both either into".split())
# Words that qualify a finding without changing it: dropped when the name with them is not in the dictionary
# ("severe hypotonia" -> Hypotonia, but "severe intellectual disability" stays Severe intellectual disability).
MODIFIERS = frozenset(
    "severe severely mild mildly moderate moderately marked markedly profound profoundly significant "
    "significantly slight slightly extreme extremely very relatively somewhat considerable striking notable "
    "pronounced bilateral bilaterally unilateral unilaterally left right sided side symmetric symmetrical "
    "asymmetric asymmetrical progressive progressively chronic acute persistent episodic intermittent "
    "occasional recurrent generalized diffuse focal isolated multiple several numerous many various "
    "congenital early late onset apparent obvious evident clinical clinically typical characteristic "
    "distinctive associated noted prominent variable borderline mainly "
    "predominantly predominant particularly especially also serum plasma level levels concentration "
    "concentrations".split()
)
# Terms whose names are everyday words: never matched from the dictionary alone (a learned name may add them).
_GENERIC_NAMES = frozenset({"all", "phenotypic abnormality", "clinical modifier", "frequency", "mode of inheritance",
                            "severity", "onset", "laterality", "position", "pattern", "death", "clinical course",
                            "past medical history", "blood group"})
_ABBREVIATION = re.compile(r"^[A-Z][A-Z0-9-]{1,6}$")
_PAREN = re.compile(r"\s*\([^)]*\)\s*")


@dataclass(frozen=True, slots=True)
class Entry:
    hpo_id: str
    rank: int  # LABEL, SYNONYM, VARIANT or LEARNED
    name: str  # the dictionary name (for explanations)


def content_words(words: Iterable[str]) -> list[str]:
    return [w for w in words if w not in STOPWORDS]


def name_keys(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(exact key, root key) of a name: the sorted content words in each normal form."""
    tokens = tokenize(name)
    exact = content_words(t.exact for t in tokens)
    roots = [root_form(w) for w in exact]
    return tuple(sorted(exact)), tuple(sorted(roots))


class Lexicon:
    """Names of HPO terms, looked up by bag of words. Build with `Lexicon.from_terms(terms)`."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, ...], list[Entry]] = {}
        self.root: dict[tuple[str, ...], list[Entry]] = {}
        self.abbreviations: dict[str, list[Entry]] = {}
        self.exact_vocab: set[str] = set()
        self.root_vocab: set[str] = set()
        self.max_words = 1

    # -- building ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_terms(cls, ids: Iterable[str], names: Iterable[str], synonyms: Iterable[Iterable[str]],
                   variants: bool = True, use_synonyms: bool = True) -> "Lexicon":
        lexicon = cls()
        for hpo_id, name, syns in zip(ids, names, synonyms):
            if name.lower() in _GENERIC_NAMES:
                continue
            lexicon.add(hpo_id, name, LABEL)
            for syn in (syns if use_synonyms else ()):
                lexicon.add(hpo_id, syn, SYNONYM)
            if variants:
                for text in (name, *(syns if use_synonyms else ())):
                    for variant in name_variants(text):
                        lexicon.add(hpo_id, variant, VARIANT)
        return lexicon

    def add(self, hpo_id: str, name: str, rank: int) -> None:
        name = name.strip()
        if not name:
            return
        entry = Entry(hpo_id, rank, name)
        if _ABBREVIATION.match(name) and len(name) <= 7:
            _insert(self.abbreviations, name, entry)
            return
        exact, root = name_keys(name)
        if not exact or len(exact) == 1 and len(name.split()) >= 3:
            return  # a name of function words around one word ("now and then") would match that word alone
        _insert(self.exact, exact, entry)
        _insert(self.root, root, entry)
        self.exact_vocab.update(exact)
        self.root_vocab.update(root)
        self.max_words = max(self.max_words, len(exact))

    def remove_rank(self, rank: int) -> None:
        """Drop every entry of one source (used to swap the learned names of one fold for another's)."""
        for table in (self.exact, self.root, self.abbreviations):
            for key in list(table):
                kept = [e for e in table[key] if e.rank != rank]
                if kept:
                    table[key] = kept
                else:
                    del table[key]

    # -- lookup -----------------------------------------------------------------------------------------------------
    def lookup(self, exact: tuple[str, ...], root: tuple[str, ...]) -> tuple[list[Entry], str]:
        """Entries for a bag of words: the exact key first, else the root key. Returns (entries, 'exact'|'root')."""
        hit = self.exact.get(exact)
        if hit:
            return hit, "exact"
        hit = self.root.get(root)
        if hit:
            return hit, "root"
        return [], ""

    def __len__(self) -> int:
        return len(self.exact) + len(self.abbreviations)


def _insert(table: dict, key, entry: Entry) -> None:
    entries = table.get(key)
    if entries is None:
        table[key] = [entry]
        return
    best = min(e.rank for e in entries)
    if entry.rank < best:
        table[key] = [entry]
    elif entry.rank == best and all(e.hpo_id != entry.hpo_id for e in entries):
        entries.append(entry)


# Words of HPO names that texts leave out ("increased IgG" for "Increased circulating IgG concentration").
_OPTIONAL = re.compile(r"\b(circulating|concentrations?|levels?|recurrent|in serum|in blood)\b", re.IGNORECASE)


def name_variants(name: str) -> list[str]:
    """Names a dictionary misses: without a parenthesis, without the words texts leave out ("circulating ...
    concentration", "recurrent"). A variant of one word is kept only when the name itself is one word. (Each side
    of "Aplasia/Hypoplasia of X" as a name of its own was tried: it reads grouping terms where annotators chose
    the specific one, and cost F1 on all three corpora.)"""
    out = []
    bare = _PAREN.sub(" ", name).strip()
    if bare and bare != name:
        out.append(bare)
    plain = _OPTIONAL.sub(" ", bare)
    if plain.split() != bare.split():
        out.append(" ".join(plain.split()))
    words = len(content_words(w.lower() for w in name.split()))
    return [v for v in out if len(content_words(w.lower() for w in v.split())) > 1 or words <= 1]


def collapse(entries: list[Entry], depth: dict[str, int]) -> list[Entry]:
    """One entry per key when the best-ranked ones disagree: the most specific term (deepest) wins."""
    if len(entries) <= 1:
        return entries
    return [max(entries, key=lambda e: (depth.get(e.hpo_id, 0), e.hpo_id))]


def group_by_id(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        out[e.hpo_id].append(e)
    return out
