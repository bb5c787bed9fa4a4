"""Concept recognition and assertions on hand-written sentences (dictionary and ConText; no corpus needed)."""

from __future__ import annotations

import math

import pytest

from dxlab.text import Annotator, TextError, patient_fields
from dxlab.text.annotate import MAX_CHARS

HYPOTONIA, SEIZURE, SCOLIOSIS, HYDROCEPHALUS = "HP:0001252", "HP:0001250", "HP:0002650", "HP:0000238"
INTELLECTUAL_DISABILITY, HEARING_IMPAIRMENT, SHORT_STATURE = "HP:0001249", "HP:0000365", "HP:0004322"


@pytest.fixture(scope="session")
def annotator(knowledge_dir) -> Annotator:
    return Annotator(learn=False).fit(knowledge_dir)


def assertions(annotator, text) -> dict[str, str]:
    """hpo_id -> assertion of its mentions (one each in these sentences)."""
    return {m.hpo_id: m.assertion for m in annotator.annotate(text)}


@pytest.mark.parametrize("text", [
    "The boy has hypotonia.", "Marked hypotonia since infancy.", "He was hypotonic at birth.",
    "Hypotonia was noted on examination.",
])
def test_present(annotator, text):
    assert assertions(annotator, text).get(HYPOTONIA) == "present"


@pytest.mark.parametrize("text", [
    "No seizures.", "She has never had seizures.", "Developing normally, without seizures.",
    "He denies seizures.", "Negative for seizures.", "Seizures were ruled out.", "There is no evidence of seizures.",
])
def test_negated(annotator, text):
    assert assertions(annotator, text).get(SEIZURE) == "negated"


@pytest.mark.parametrize("text, term", [
    ("Possible scoliosis.", SCOLIOSIS), ("Rule out hydrocephalus.", HYDROCEPHALUS),
    ("Hydrocephalus is suspected.", HYDROCEPHALUS), ("If seizures occur, give rectal diazepam.", SEIZURE),
])
def test_uncertain(annotator, text, term):
    assert assertions(annotator, text).get(term) == "uncertain"


def test_negation_stops_at_the_sentence_end(annotator):
    found = assertions(annotator, "No seizures. Hypotonia was noted.")
    assert found == {SEIZURE: "negated", HYPOTONIA: "present"}


def test_negation_stops_at_but(annotator):
    found = assertions(annotator, "No seizures but marked hypotonia.")
    assert found == {SEIZURE: "negated", HYPOTONIA: "present"}


def test_negation_stops_at_a_semicolon(annotator):
    assert assertions(annotator, "no seizures; hypotonic")[HYPOTONIA] == "present"


@pytest.mark.parametrize("text, relative", [
    ("His maternal uncle had intellectual disability.", "maternal uncle"),
    ("Her mother has intellectual disability.", "mother"),
    ("Intellectual disability in his brother.", "brother"),
    ("Family history of intellectual disability.", "family"),
])
def test_family(annotator, text, relative):
    (mention,) = [m for m in annotator.annotate(text) if m.hpo_id == INTELLECTUAL_DISABILITY]
    assert (mention.assertion, mention.relative) == ("family", relative)


def test_the_relative_as_informant_is_not_family(annotator):
    assert assertions(annotator, "His mother reports that he has seizures.")[SEIZURE] == "present"


def test_family_history_never_becomes_a_patient_finding(annotator):
    note = ("6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; hearing "
            "normal, no cardiac murmur; his maternal uncle had intellectual disability. Her sister is short. "
            "His father has short stature.")
    fields = patient_fields(annotator.annotate(note))
    assert INTELLECTUAL_DISABILITY not in fields["findings"] + fields["excluded"] + fields["uncertain"]
    assert SHORT_STATURE not in fields["findings"]
    assert {"hpo_id": INTELLECTUAL_DISABILITY, "relative": "maternal uncle"} in fields["family"]
    assert {"hpo_id": SHORT_STATURE, "relative": "father"} in fields["family"]
    assert fields["family_history"] == 1.0  # the father: first degree
    assert HYPOTONIA in fields["findings"] and SEIZURE in fields["findings"]
    assert HEARING_IMPAIRMENT in fields["excluded"]  # "hearing normal"


def test_second_degree_relative_alone_leaves_family_history_unknown(annotator):
    fields = patient_fields(annotator.annotate("His maternal uncle had intellectual disability."))
    assert math.isnan(fields["family_history"]) and fields["findings"] == []


def test_a_term_both_affirmed_and_negated_stays_a_finding(annotator):
    fields = patient_fields(annotator.annotate("No seizures at first. Later, seizures began."))
    assert SEIZURE in fields["findings"] and SEIZURE not in fields["excluded"]


@pytest.mark.parametrize("text, term", [
    ("Multiple café-au-lait spots.", "HP:0000957"),  # accents
    ("Hypoplastic nails.", "HP:0001792"),  # adjective for the noun of 'Small nail' synonyms
    ("Tumours of the brain.", "HP:0030692"),  # UK spelling, plural, word order
    ("There is a VSD.", "HP:0001629"),  # the dictionary's abbreviation, case-sensitive
    ("Renal anomalies.", "HP:0000077"),  # Abnormality of the kidney
    ("Severe hypotonia.", HYPOTONIA),  # modifier (the nested match)
])
def test_lexical_variants(annotator, text, term):
    assert term in {m.hpo_id for m in annotator.annotate(text)}


def test_lists_sharing_a_head(annotator):
    found = {m.hpo_id for m in annotator.annotate("Renal and ear anomalies.")}
    assert {"HP:0000077", "HP:0000598"} <= found


def test_an_abbreviation_defined_in_the_text(annotator):
    mentions = annotator.annotate("Basal cell carcinoma (BCC) was found. Two BCCs recurred.")
    assert [m.text for m in mentions if m.hpo_id == "HP:0002671"] == ["Basal cell carcinoma", "BCC", "BCCs"]


def test_a_lower_case_word_is_no_abbreviation(annotator):
    assert "HP:0001631" not in {m.hpo_id for m in annotator.annotate("an asd of words")}


NOTES = [
    "6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; hearing normal.",
    "Ear, oral, and craniofacial anomalies.\n\nPits of the palms and soles; BCC (basal cell carcinoma).",
    "  Tumours   of the\tbrain —  café-au-lait spots, scoliotic spine (severe), VSDs.  ",
    "Le patient présente une hypotonie; 患者有癫痫; seizures ×3 — «hypotonia».",
]


@pytest.mark.parametrize("text", NOTES)
def test_every_span_points_at_its_text(annotator, text):
    mentions = annotator.annotate(text)
    assert mentions
    for m in mentions:
        assert 0 <= m.start < m.end <= len(text)
        assert text[m.start:m.end] == m.text


@pytest.mark.parametrize("text", ["", "   \n\t ", None, "1234 5678", "!!!"])
def test_empty_or_wordless_text_gives_no_mention(annotator, text):
    assert annotator.annotate(text) == []


def test_non_english_text_is_read_without_error(annotator):
    mentions = annotator.annotate("患者 癫痫 发作。Пациент с судорогами. المريض")
    assert mentions == []


def test_text_over_the_limit_is_refused_clearly(annotator):
    with pytest.raises(TextError, match="longer than the limit"):
        annotator.annotate("hypotonia " * (MAX_CHARS // 10 + 1))


def test_one_megabyte_of_text(annotator):
    text = ("Severe hypotonia and seizures. " * 40_000)[: 1024 * 1024]
    with pytest.raises(TextError, match="1,048,576 characters"):
        annotator.annotate(text)
    long_note = text[: MAX_CHARS // 10]  # long, but allowed: read whole
    mentions = annotator.annotate(long_note)
    assert len([m for m in mentions if m.hpo_id == SEIZURE]) > 3000
    assert all(long_note[m.start:m.end] == m.text for m in mentions)


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "abc\x00def", b"\xff\xfe\xfa"])
def test_binary_input_is_refused_clearly(annotator, data):
    with pytest.raises(TextError, match="binary|UTF-8"):
        annotator.annotate(data)


def test_utf8_bytes_are_read(annotator):
    assert {m.hpo_id for m in annotator.annotate("Hypotonie? hypotonia.".encode())} == {HYPOTONIA}


def test_not_text_is_refused_clearly(annotator):
    with pytest.raises(TextError, match="expected text"):
        annotator.annotate(12345)
