"""English free text -> mentions of HPO terms with character spans and an assertion each.

    annotator = Annotator().fit(Knowledge.load("data/knowledge"))            # dictionary only
    annotator = Annotator().fit(knowledge, documents=read_corpus(paths))     # + names and a filter learned from text
    annotator.annotate("Hypotonic since infancy; no seizures.")
    -> [Mention(0, 9, 'Hypotonic', 'HP:0001252', 'present'), Mention(28, 36, 'seizures', 'HP:0001250', 'negated')]

How a mention is found: the text is cut into sentences and clauses (; : brackets, and commas); within a clause every
run of words whose normal forms the dictionary knows is looked up by its bag of content words (word order free),
first in exact form, then in root form, then without qualifying modifiers ("severe", "bilateral"). Lists that
share a head ("ear, oral, and craniofacial anomalies") are read as one name per member. Abbreviations match
case-sensitively: the dictionary's ("VSD"), and those a text defines ("basal cell carcinoma (BCC)"). Overlaps
keep the longest match; a shorter match nested inside it is kept too (`nested`), as annotators do. ConText
(`context.py`) then gives each mention its assertion. With learned parts, names seen in annotated text are added
and a classifier trained on annotated documents drops the document-level candidates annotators would not mark.
"""

from __future__ import annotations

import math
import pickle
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dxlab.text.context import FAMILY, FIRST_DEGREE, NEGATED, PRESENT, UNCERTAIN, assert_mentions
from dxlab.text.lexicon import BREAKERS, MODIFIERS, SOURCES, STOPWORDS, Entry, Lexicon, collapse
from dxlab.text.normalise import CLAUSE_BREAKS, Token, root_form, sentence_bounds, tokenize

MAX_CHARS = 1_000_000  # longer texts are refused with a clear error (the API and the command report it)
PHENOTYPIC_ABNORMALITY = "HP:0000118"
# HPO branches a mention may come from. Qualifiers of a finding (severity, laterality, "affected") are not findings;
# the clinical course (onset, progression) and variability are, as annotators of case texts mark them.
BRANCHES = {
    "phenotype": "HP:0000118", "inheritance": "HP:0000005", "course": "HP:0031797", "variability": "HP:0003812",
    "modifier": "HP:0012823", "frequency": "HP:0040279", "history": "HP:0032443", "blood_group": "HP:0032223",
}
# Functions and organs a text calls normal ("hearing normal", "normal development"): the finding is excluded.
NORMAL_FINDINGS = {
    ("hearing",): "Hearing impairment", ("vision",): "Visual impairment", ("eyesight",): "Visual impairment",
    ("visual", "acuity"): "Visual impairment", ("intelligence",): "Intellectual disability",
    ("cognition",): "Intellectual disability", ("iq",): "Intellectual disability",
    ("development",): "Global developmental delay", ("psychomotor", "development"): "Global developmental delay",
    ("milestone",): "Global developmental delay", ("growth",): "Growth abnormality",
    ("height",): "Short stature", ("stature",): "Short stature", ("tone",): "Abnormal muscle tone",
    ("muscle", "tone"): "Abnormal muscle tone", ("head", "circumference"): "Abnormality of skull size",
    ("echocardiogram",): "Abnormal heart morphology", ("echocardiography",): "Abnormal heart morphology",
    ("brain", "mri"): "Abnormal brain morphology", ("eeg",): "Abnormal EEG", ("electroencephalogram",): "Abnormal EEG",
}


class TextError(ValueError):
    """Input the annotator cannot read (not text, or too long); the message says which and why."""


@dataclass(frozen=True, slots=True)
class Mention:
    start: int  # character offsets into the text: text[start:end] == self.text
    end: int
    text: str
    hpo_id: str
    assertion: str  # present | negated | uncertain | family
    relative: str = ""  # for family mentions: "maternal uncle", or "family" when unnamed
    label: str = ""  # the term's name in the pinned release
    source: str = ""  # label | synonym | variant | learned | abbreviation | normal
    score: float = 1.0  # the filter's probability that an annotator would mark this term (1 without a filter)

    def as_dict(self) -> dict:
        out = asdict(self)
        if not self.relative:
            out.pop("relative")
        return out


@dataclass(slots=True)
class Candidate:
    first: int  # token indices into the document, inclusive / exclusive
    last: int
    hpo_id: str
    rank: int
    level: int  # 0 exact, 1 root, 2 modifiers dropped, 3 coordination, 4 abbreviation
    n_words: int
    nested: bool = False
    extra: dict = field(default_factory=dict)
    alternatives: list = field(default_factory=list)  # other readings of the same words: (id, rank, level)
    alternative: bool = False  # this candidate is another reading of a kept match


class Annotator:
    """Concept recognition for HPO terms with assertions. See the module docstring.

    Parameters choose the dictionary (ablations switch them off one by one); `learn` adds the parts learned from
    annotated documents passed to `fit` (names seen in them, and the document-level filter).
    """

    def __init__(self, knowledge_dir: str | None = None, synonyms: bool = True, variants: bool = True,
                 roots: bool = True, modifiers: bool = True, coordination: bool = True, abbreviations: bool = True,
                 nested: bool = True, branches: Sequence[str] = ("phenotype", "inheritance", "course", "variability"),
                 learn: bool = True, min_learned_count: int = 2, min_learned_precision: float = 0.3,
                 threshold: float = 0.5, seed: int = 0):
        self.knowledge_dir = knowledge_dir
        self.synonyms = synonyms
        self.variants = variants
        self.roots = roots
        self.modifiers = modifiers
        self.coordination = coordination
        self.abbreviations = abbreviations
        self.nested = nested
        self.branches = branches
        self.learn = learn
        self.min_learned_count = min_learned_count
        self.min_learned_precision = min_learned_precision
        self.threshold = threshold
        self.seed = seed

    # -- fitting ----------------------------------------------------------------------------------------------------
    def fit(self, knowledge=None, documents: Sequence[dict] | None = None) -> "Annotator":
        """Build the dictionary from the knowledge tables; with annotated documents, learn names and the filter.

        knowledge: a `Knowledge`, or the folder of its tables (default `knowledge_dir`; only the terms and aliases
        tables are read).
        documents: dicts with "text" and "mentions" ([{"start", "end", "hpo_id", "negated"}]), as in the shared
        corpora. Without them the annotator is the dictionary and ConText alone.
        """
        if knowledge is None or isinstance(knowledge, (str, Path)):
            if knowledge is None and self.knowledge_dir is None:
                raise ValueError("Annotator.fit needs knowledge tables: pass knowledge= or set knowledge_dir")
            terms, aliases = read_terms(knowledge or self.knowledge_dir)
        else:
            terms, aliases = knowledge.terms, knowledge.aliases
        roots = [BRANCHES[b] for b in self.branches]
        keep = [any(r in anc for r in roots) for anc in terms["ancestors"]]
        terms = terms[keep]
        self.terms_ = dict(zip(terms["id"], terms["name"]))
        self.depth_ = {t: int(d) for t, d in zip(terms["id"], terms["depth"])}
        self.ic_ = {t: float(v) for t, v in zip(terms["id"], terms["ic"])}
        self.ancestors_ = {t: frozenset(a) for t, a in zip(terms["id"], terms["ancestors"])}
        self.alias_ = dict(zip(aliases["alias"], aliases["id"]))
        self.lexicon_ = Lexicon.from_terms(terms["id"], terms["name"], terms["synonyms"], variants=self.variants,
                                           use_synonyms=self.synonyms)
        self.spelling_ = _deletion_index(self.lexicon_.exact_vocab) if self.variants else {}
        by_name = {n.lower(): t for t, n in self.terms_.items()}
        self.normal_findings_ = {k: by_name[v.lower()] for k, v in NORMAL_FINDINGS.items() if v.lower() in by_name}
        self.filter_ = None
        self.learned_ = None  # Lexicon of names learned from annotated text (learn.py)
        self.overrides_: frozenset = frozenset()  # learned names that replace the dictionary's reading of a key
        self.alternatives_ = False  # propose every reading of ambiguous words (only with a filter to weigh them)
        if documents and self.learn:
            from dxlab.text.learn import fit_learned

            fit_learned(self, documents)
        return self

    def normalise_id(self, hpo_id: str) -> str:
        """Primary id of an alt or obsolete id of the pinned release."""
        return hpo_id if hpo_id in self.terms_ else self.alias_.get(hpo_id, hpo_id)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def load(path: str | Path) -> "Annotator":
        with open(path, "rb") as fh:
            return pickle.load(fh)

    # -- annotation -------------------------------------------------------------------------------------------------
    def annotate(self, text: str) -> list[Mention]:
        """Mentions of HPO terms in `text`, in text order, each with its assertion (see the module docstring)."""
        text = check_text(text)
        if not text.strip():
            return []
        tokens = self.tokens(text)
        candidates = self._candidates(text, tokens)
        mentions = self._assert(text, tokens, candidates)
        if self.filter_ is not None:
            from dxlab.text.learn import apply_filter

            mentions = apply_filter(self, text, tokens, candidates, mentions)
        return mentions

    def tokens(self, text: str) -> list[Token]:
        """The text's tokens, a misspelt long word replaced by the one dictionary word it is one edit away from
        ("polydatyly" -> polydactyly); the offsets stay those of the written word."""
        tokens = tokenize(text)
        spelling = getattr(self, "spelling_", None)
        if not spelling:
            return tokens
        vocab = self.lexicon_.exact_vocab
        out = []
        for tok in tokens:
            if len(tok.exact) >= 7 and tok.exact not in vocab and tok.exact.isalpha() and tok.exact not in MODIFIERS:
                fixed = _correct(tok.exact, vocab, spelling)
                if fixed is not None:
                    tok = Token(tok.start, tok.end, tok.text, fixed, root_form(fixed), tok.index)
            out.append(tok)
        return out

    def annotate_many(self, texts: Iterable[str]) -> list[list[Mention]]:
        return [self.annotate(t) for t in texts]

    # -- candidates -------------------------------------------------------------------------------------------------
    def _candidates(self, text: str, tokens: list[Token]) -> list[Candidate]:
        found: list[Candidate] = []
        for segment in _segments(text, tokens):
            found.extend(self._match_segment(segment))
        if self.coordination:
            found.extend(self._coordinations(text, tokens))
        if self.abbreviations:
            found.extend(self._abbreviations(text, tokens, found))
        found.extend(self._normal_statements(text, tokens))
        return self._resolve(found)

    def _match_segment(self, segment: list[Token]) -> list[Candidate]:
        lex, learned = self.lexicon_, self.learned_
        content = [t for t in segment if t.exact not in STOPWORDS]
        out = []
        limit = max(lex.max_words, learned.max_words if learned else 0) + 2
        for i in range(len(content)):
            for j in range(i, min(len(content), i + limit)):
                tok = content[j]
                if not (tok.exact in lex.exact_vocab or tok.root in lex.root_vocab or tok.exact in MODIFIERS
                        or learned is not None
                        and (tok.exact in learned.exact_vocab or tok.root in learned.root_vocab)):
                    break
                if j > i and tok.exact in MODIFIERS and tok.exact not in lex.exact_vocab:
                    continue  # a match does not end on a qualifier ("hypotonia was noted")
                window = content[i:j + 1]
                hit = self._lookup(window)
                if hit is not None:
                    entries, level = hit
                    cand = self._candidate(window, entries, level)
                    if self.alternatives_:
                        cand.alternatives = self._alternatives(window, cand.hpo_id)
                    out.append(cand)
        return out

    def _alternatives(self, window: list[Token], chosen: str) -> list[tuple[str, int, int]]:
        """Other terms the same words name (exact, root and learned readings): (id, rank, level) each. The
        document-level filter weighs them against the chosen one."""
        lex, learned = self.lexicon_, self.learned_
        exact = tuple(sorted(t.exact for t in window))
        root = tuple(sorted(t.root for t in window))
        seen, out = {chosen}, []
        for entries, level in ((lex.exact.get(exact), 0), (lex.root.get(root), 1),
                               (learned.exact.get(exact) if learned is not None else None, 0)):
            for e in entries or ():
                if e.hpo_id not in seen:
                    seen.add(e.hpo_id)
                    out.append((e.hpo_id, e.rank, level))
        return out

    def _lookup(self, window: list[Token], loose: bool = True):
        """(entries, level) for a run of words: learned overrides, then the dictionary's exact names and root
        names (a label or synonym read through roots beats a generated variant read exactly), learned names, and
        last (`loose`) the run without its modifiers."""
        lex, learned = self.lexicon_, self.learned_
        exact = tuple(sorted(t.exact for t in window))
        if learned is not None and exact in self.overrides_:
            return learned.exact[exact], 0
        root = tuple(sorted(t.root for t in window)) if self.roots else None
        hit = self._best(lex, exact, root)
        if hit is None and learned is not None:
            hit = self._best(learned, exact, root)
        if hit is not None or not loose or not self.modifiers or len(window) < 2:
            return hit
        core = [t for t in window if t.exact not in MODIFIERS]
        if not core or len(core) == len(window):
            return None
        key = tuple(sorted(t.exact for t in core))
        hit = self._best(lex, key, tuple(sorted(t.root for t in core)) if self.roots else None)
        if hit is None and learned is not None and key in learned.exact:
            hit = learned.exact[key], 0
        return (hit[0], 2) if hit is not None else None

    @staticmethod
    def _best(lex: Lexicon, exact: tuple, root: tuple | None):
        by_exact = lex.exact.get(exact)
        by_root = lex.root.get(root) if root is not None else None
        if by_exact and (not by_root or by_exact[0].rank <= by_root[0].rank):
            return by_exact, 0
        if by_root:
            return by_root, 1
        return None

    def _candidate(self, window: list[Token], entries: list[Entry], level: int) -> Candidate:
        entry = collapse(entries, self.depth_)[0]
        return Candidate(window[0].index, window[-1].index + 1, entry.hpo_id, entry.rank, level, len(window))

    def _coordinations(self, text: str, tokens: list[Token]) -> list[Candidate]:
        """'ear, oral, and craniofacial anomalies' -> ear anomaly, oral anomaly, craniofacial anomaly (and the
        mirror 'pits of the palms and soles'): each member joined to the shared head is looked up."""
        out = []
        n = len(tokens)
        for i in range(1, n - 1):
            if tokens[i].exact not in ("and", "or"):
                continue
            # members before the conjunction: single words separated by commas (or 'and/or')
            members = [i - 1]
            k = i - 1
            while k >= 2 and text[tokens[k - 1].end:tokens[k].start].strip() == "," and \
                    tokens[k - 1].exact not in STOPWORDS:
                members.append(k - 1)
                k -= 1
            after = i + 1
            if after < n and tokens[after].exact in ("or", "and"):
                after += 1  # "and/or"
            if after >= n:
                continue
            # forward head: the conjunct after 'and' is one word, the head follows it ("renal and ear anomalies")
            for head_len in (1, 2, 3):
                head = tokens[after + 1:after + 1 + head_len]
                if len(head) < head_len or any(_crosses(text, a, b) for a, b in zip(head, head[1:])) or \
                        (head and _crosses(text, tokens[after], head[0])):
                    break
                head_content = [t for t in head if t.exact not in STOPWORDS]
                if not head_content:
                    continue
                for m in members:
                    if tokens[m].exact in STOPWORDS or tokens[m].exact in MODIFIERS:
                        continue
                    hit = self._lookup([tokens[m], *head_content], loose=False)
                    if hit is not None:
                        cand = self._candidate([tokens[m], *head_content], *hit)
                        cand.first, cand.last, cand.level = m, head[-1].index + 1, 3
                        out.append(cand)
            # backward head: "pits of the palms and soles", "hypoplasia of the radius and ulna"
            second = tokens[after]
            if second.exact in STOPWORDS:
                continue
            of = i - 2
            while of >= 0 and tokens[of].exact in ("the", "both"):
                of -= 1
            if of < 1 or tokens[of].exact != "of" or _crosses_any(text, tokens[of:after + 1]):
                continue
            for head_start in range(of - 1, max(-1, of - 4), -1):
                run = tokens[head_start:of]
                head = [t for t in run if t.exact not in STOPWORDS]
                if not head or _crosses_any(text, tokens[head_start:of + 1]):
                    break
                hit = self._lookup([*head, second], loose=False)
                if hit is not None and self._lookup([*head, tokens[i - 1]], loose=False) is not None:
                    cand = self._candidate([*head, second], *hit)
                    cand.first, cand.last, cand.level = head[0].index, after + 1, 3
                    out.append(cand)
                    break
        return out

    def _abbreviations(self, text: str, tokens: list[Token], found: list[Candidate]) -> list[Candidate]:
        out = []
        lex = self.lexicon_
        defined: dict[str, str] = {}
        # "long form (ABBR)": the abbreviation stands for the matched term in the rest of the text
        ends = {}
        for c in found:
            if c.level <= 2:
                ends.setdefault(c.last, c)
        bracketed = set()  # abbreviations the text defines: the dictionary's meaning no longer applies
        for i, tok in enumerate(tokens):
            if i == 0 or not _is_abbreviation(tok.text):
                continue
            if text[tokens[i - 1].end:tok.start].strip().endswith("(") and text[tok.end:tok.end + 1] in ")/;,":
                bracketed.add(tok.text)
                cand = ends.get(i)
                if cand is not None and text[tokens[i - 1].end:tok.start].strip() == "(":
                    defined[tok.text] = cand.hpo_id
        for tok in tokens:
            word = tok.text
            stem = word[:-1] if word.endswith("s") and _is_abbreviation(word[:-1]) else word
            if stem in defined:
                out.append(Candidate(tok.index, tok.index + 1, defined[stem], 1, 4, 1))
            elif stem in lex.abbreviations and stem not in bracketed:
                entry = collapse(lex.abbreviations[stem], self.depth_)[0]
                out.append(Candidate(tok.index, tok.index + 1, entry.hpo_id, entry.rank, 4, 1))
        return out

    def _normal_statements(self, text: str, tokens: list[Token]) -> list[Candidate]:
        """'hearing normal', 'normal development', 'hearing was normal' -> the finding, excluded."""
        out = []
        for i, tok in enumerate(tokens):
            if tok.exact not in ("normal", "normally", "unremarkable"):
                continue
            for words, hpo_id in self.normal_findings_.items():
                n = len(words)
                after = tokens[i + 1:i + 1 + n]
                before_span = tokens[max(0, i - n - 2):i]
                if [t.exact for t in after] == list(words) and not _crosses_any(text, [tok, *after]):
                    out.append(Candidate(i, i + 1 + n, hpo_id, 0, 5, n + 1, extra={"normal": i}))
                    break
                for s in range(len(before_span) - n + 1):
                    chunk = before_span[s:s + n]
                    rest = before_span[s + n:]
                    if [t.exact for t in chunk] == list(words) and all(t.exact in ("is", "was", "were", "are", "be",
                                                                                       "been") for t in rest) \
                            and not _crosses_any(text, [*chunk, *rest, tok]):
                        out.append(Candidate(chunk[0].index, i + 1, hpo_id, 0, 5, n + 1, extra={"normal": i}))
                        break
        return out

    def _resolve(self, found: list[Candidate]) -> list[Candidate]:
        """Longest first; a match crossing a longer one is dropped, one nested inside it kept when `nested`. Members
        of lists come last: kept unless they cross a direct match (they may contain one: 'palmar and plantar pits')."""
        direct = [c for c in found if c.level != 3]
        direct.sort(key=lambda c: (-(c.last - c.first), -c.n_words, c.level, c.rank, c.first))
        kept: list[Candidate] = []
        covering: dict[int, list[Candidate]] = {}  # token index -> kept matches over it (spans are short)

        def overlapping(c: Candidate) -> list[Candidate]:
            out: dict[int, Candidate] = {}
            for t in range(c.first, c.last):
                for k in covering.get(t, ()):
                    out[id(k)] = k
            return list(out.values())

        def keep(c: Candidate) -> None:
            kept.append(c)
            for t in range(c.first, c.last):
                covering.setdefault(t, []).append(c)

        for c in direct:
            clash = False
            for k in overlapping(c):
                inside = k.first <= c.first and c.last <= k.last
                if not inside or c.hpo_id == k.hpo_id or not self.nested or "normal" in k.extra:
                    clash = True
                    break
                c.nested = True
            if not clash:
                keep(c)
        listed = sorted((c for c in found if c.level == 3), key=lambda c: (c.first, c.last))
        for c in listed:
            near = overlapping(c)
            crossing = any(not (k.first <= c.first and c.last <= k.last or c.first <= k.first and k.last <= c.last)
                           for k in near)
            if crossing or any(k.hpo_id == c.hpo_id for k in near):
                continue
            c.nested = any(k.first <= c.first and c.last <= k.last for k in near)
            keep(c)
        for c in list(kept):
            for hpo_id, rank, level in c.alternatives:
                kept.append(Candidate(c.first, c.last, hpo_id, rank, level, c.n_words, c.nested, alternative=True))
        kept.sort(key=lambda c: (c.first, c.last))
        return kept

    # -- assertions -------------------------------------------------------------------------------------------------
    def _assert(self, text: str, tokens: list[Token], candidates: list[Candidate]) -> list[Mention]:
        mentions: list[Mention] = []
        if not candidates:
            return mentions
        firsts = [c.first for c in candidates]  # sorted: _resolve returns text order
        for s_start, s_end in _assertion_units(text):
            lo = _first_at(tokens, s_start)
            hi = _first_at(tokens, s_end)
            inside = candidates[bisect_left(firsts, lo):bisect_left(firsts, hi)]
            if not inside:
                continue
            words = tokens[lo:hi]
            spans = [(c.first - lo, min(c.last, hi) - lo) for c in inside]
            for c, (assertion, relative) in zip(inside, assert_mentions(words, spans)):
                if "normal" in c.extra:  # "hearing normal": the finding is excluded, unless "not normal"
                    if assertion == PRESENT:
                        assertion = NEGATED
                    elif assertion == NEGATED and _negated_normal(tokens, c.extra["normal"]):
                        assertion = PRESENT
                start, end = tokens[c.first].start, tokens[c.last - 1].end
                source = "abbreviation" if c.level == 4 else "normal" if c.level == 5 else SOURCES[c.rank]
                mentions.append(Mention(start, end, text[start:end], c.hpo_id, assertion, relative,
                                        self.terms_.get(c.hpo_id, ""), source))
        return mentions


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _deletion_index(vocab) -> dict[str, str | None]:
    """Each dictionary word of 6+ letters under each of its one-letter deletions (None where two words meet)."""
    index: dict[str, str | None] = {}
    for word in vocab:
        if len(word) >= 6 and word.isalpha():
            for d in _deletions(word):
                index[d] = word if index.get(d, word) == word else None
    return index


def _correct(word: str, vocab, index: dict) -> str | None:
    """The one dictionary word one insertion, deletion, substitution or transposition away, else None."""
    found = set()
    for d in _deletions(word):
        if d in vocab:
            found.add(d)  # a letter too many
        hit = index.get(d)
        if hit:
            found.add(hit)  # a letter changed (or two swapped)
    hit = index.get(word)
    if hit:
        found.add(hit)  # a letter missing
    return found.pop() if len(found) == 1 else None


def read_terms(directory: str | Path):
    """The two knowledge tables the annotator reads (the columns it needs only: they are most of its memory)."""
    import pandas as pd

    directory = Path(directory)
    missing = [n for n in ("terms", "aliases") if not (directory / f"{n}.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"knowledge tables {missing} not found in {directory}: run the knowledge stage "
                                "(`dvc repro knowledge` or `python -m dxlab.stages.knowledge`)")
    terms = pd.read_parquet(directory / "terms.parquet", columns=["id", "name", "synonyms", "ancestors", "depth", "ic"])
    return terms, pd.read_parquet(directory / "aliases.parquet", columns=["alias", "id"])


def _negated_normal(tokens: list[Token], at: int) -> bool:
    """'not normal', 'never normal' (the word before 'normal', or two before: 'was not normal')."""
    return any(t.exact in ("not", "never") for t in tokens[max(0, at - 2):at])


def _is_abbreviation(word: str) -> bool:
    return 2 <= len(word) <= 7 and word[0].isupper() and sum(c.isupper() for c in word) >= 2 and word.isalnum()


def _crosses(text: str, a: Token, b: Token) -> bool:
    """Whether the characters between two tokens break a clause (punctuation other than hyphen, slash, quote)."""
    between = text[a.end:b.start]
    return any(ch in CLAUSE_BREAKS or ch in ",.!?\n" for ch in between)


def _crosses_any(text: str, run: list[Token]) -> bool:
    return any(_crosses(text, a, b) for a, b in zip(run, run[1:]))


def _segments(text: str, tokens: list[Token]) -> list[list[Token]]:
    """Runs of tokens with no clause break (punctuation, or a function word like 'as', 'which') between them."""
    segments, current = [], []
    for tok in tokens:
        if tok.exact in BREAKERS:
            if current:
                segments.append(current)
            current = []
            continue
        if current and _crosses(text, current[-1], tok):
            segments.append(current)
            current = []
        current.append(tok)
    if current:
        segments.append(current)
    return segments


def _assertion_units(text: str) -> list[tuple[int, int]]:
    """Sentences, cut again at semicolons (a negation never reaches past either)."""
    units = []
    for start, end in sentence_bounds(text):
        pos = start
        for k in range(start, end):
            if text[k] == ";":
                units.append((pos, k + 1))
                pos = k + 1
        units.append((pos, end))
    return units


def _first_at(tokens: list[Token], offset: int) -> int:
    lo, hi = 0, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if tokens[mid].start < offset:
            lo = mid + 1
        else:
            hi = mid
    return lo


def check_text(text) -> str:
    """The text as a str, or TextError saying why it cannot be read."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TextError(f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    if not isinstance(text, str):
        raise TextError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise TextError(f"text of {len(text):,} characters is longer than the limit of {MAX_CHARS:,}")
    head = text[:10_000]
    if "\x00" in text or sum(not (c.isprintable() or c.isspace()) for c in head) > 0.1 * len(head):
        raise TextError("binary data, not text (control characters)")
    return text


def patient_fields(mentions: Iterable[Mention]) -> dict:
    """The canonical table's view of a note's mentions: findings, excluded, family history.

    findings: HPO ids present in the patient; excluded: ids negated for the patient (never also in findings:
    a term both affirmed and negated in one note stays a finding); uncertain: ids only suspected; family: the
    relatives' findings ({"hpo_id", "relative"}), never the patient's; family_history: 1.0 when a first-degree
    relative has a finding, else NaN (unknown), as the canonical table's column means.
    """
    present, negated, uncertain, family = [], [], [], []
    for m in mentions:
        bucket = {PRESENT: present, NEGATED: negated, UNCERTAIN: uncertain}.get(m.assertion)
        if bucket is not None:
            if m.hpo_id not in bucket:
                bucket.append(m.hpo_id)
        elif m.assertion == FAMILY and not any(f["hpo_id"] == m.hpo_id and f["relative"] == m.relative
                                               for f in family):
            family.append({"hpo_id": m.hpo_id, "relative": m.relative})
    excluded = [t for t in negated if t not in present]
    uncertain = [t for t in uncertain if t not in present and t not in excluded]
    first_degree = any(set(f["relative"].split()) & FIRST_DEGREE for f in family)
    return {"findings": present, "excluded": excluded, "uncertain": uncertain, "family": family,
            "family_history": 1.0 if first_degree else float("nan")}


__all__ = ["Annotator", "Mention", "TextError", "patient_fields", "check_text", "read_terms", "MAX_CHARS"]
