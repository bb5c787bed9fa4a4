"""Normal forms, sentences and spelling: the pieces the matcher's recall rests on."""

from __future__ import annotations

import pytest

from dxlab.text.annotate import _correct, _deletion_index
from dxlab.text.normalise import exact_form, root_form, sentence_bounds, tokenize


@pytest.mark.parametrize("word, exact", [
    ("Tumours", "tumor"), ("vertebrae", "vertebra"), ("anomalies", "anomaly"), ("nevi", "nevus"),
    ("carcinomas", "carcinoma"), ("stenoses", "stenosis"), ("feet", "foot"), ("pancreas", "pancreas"),
    ("oedema", "edema"), ("Café", "cafe"), ("A", "A"), ("a", "a"), ("lens", "lens"), ("reflexes", "reflex"),
])
def test_exact_form(word, exact):
    assert exact_form(word) == exact


@pytest.mark.parametrize("a, b", [
    ("hypoplastic", "hypoplasia"), ("scoliotic", "scoliosis"), ("thickened", "thickening"), ("renal", "kidney"),
    ("anomaly", "abnormality"), ("malformation", "abnormality"), ("atrophic", "atrophy"), ("hypotonic", "hypotonia"),
    ("microcephalic", "microcephaly"), ("dysmorphic", "dysmorphism"),
])
def test_root_form_joins_adjective_and_noun(a, b):
    assert root_form(exact_form(a)) == root_form(exact_form(b))


def test_tokens_keep_their_offsets():
    text = "Café-au-lait spots; ×3 «hypotonia» 患者"
    for tok in tokenize(text):
        assert text[tok.start:tok.end] == tok.text


def test_sentences_do_not_end_at_abbreviations():
    text = "Smith et al. reported hypotonia, e.g. in infants. No seizures.\n\nHearing normal"
    assert [text[s:e].strip() for s, e in sentence_bounds(text)] == [
        "Smith et al. reported hypotonia, e.g. in infants.", "No seizures.", "Hearing normal"]


def test_one_edit_spelling():
    vocab = {"polydactyly", "brachydactyly", "hypotonia", "ankylosis"}
    index = _deletion_index(vocab)
    assert _correct("polydatyly", vocab, index) == "polydactyly"  # a letter missing
    assert _correct("hypotonai", vocab, index) == "hypotonia"  # two letters swapped
    assert _correct("brachydactylyy", vocab, index) == "brachydactyly"  # a letter too many
    assert _correct("hypertonia", vocab, index) is None  # two edits
