"""Parsing of the raw HPO files and the frequency conversion."""

import math

import pytest

from dxlab.knowledge import hpo


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HP:0040280", 1.0),
        ("HP:0040281", 0.895),
        ("HP:0040282", 0.545),
        ("HP:0040283", 0.17),
        ("HP:0040284", 0.025),
        ("HP:0040285", 0.0),
        ("3/4", 0.75),
        ("0/7", 0.0),
        ("12%", 0.12),
        ("12.5%", 0.125),
        ("", 0.4),
        (None, 0.4),
        (float("nan"), 0.4),
    ],
)
def test_frequency_to_probability(raw, expected):
    assert math.isclose(hpo.frequency_to_probability(raw, default=0.4), expected)


@pytest.mark.parametrize("raw", ["5/0", "7/3", "120%", "often", "HP:0000001"])
def test_frequency_rejects_nonsense(raw):
    with pytest.raises(ValueError, match="frequency"):
        hpo.frequency_to_probability(raw)


def test_frequency_categories_are_configurable():
    assert hpo.frequency_to_probability("HP:0040281", categories={"HP:0040281": 0.8}) == 0.8


def test_known_term_ancestors(knowledge):
    # Focal-onset seizure -> Seizure -> Abnormality of the nervous system -> Phenotypic abnormality -> All
    ancestors = knowledge.ancestors["HP:0007359"]
    assert {"HP:0001250", "HP:0000707", "HP:0000118", "HP:0000001", "HP:0007359"} <= ancestors
    assert "HP:0001626" not in ancestors  # not a cardiovascular abnormality
    assert knowledge.term_names["HP:0001250"] == "Seizure"
    assert "HP:0001250" in knowledge.propagate(["HP:0007359"])


def test_information_content_grows_with_specificity(knowledge):
    ic = knowledge.ic
    assert ic["HP:0000001"] == pytest.approx(0.0, abs=1e-9)
    assert ic["HP:0000118"] < ic["HP:0000707"] < ic["HP:0001250"] < ic["HP:0007359"]


def test_alt_ids_resolve_to_live_terms(knowledge):
    assert knowledge.normalise_term("HP:0001425") == "HP:0000005"  # an alt_id of Mode of inheritance
    assert knowledge.normalise_term("HP:9999999") is None
    assert knowledge.normalise_term("HP:0001250") == "HP:0001250"


def test_known_disease_annotations(knowledge):
    ann = knowledge.annotations
    marfan = ann[ann["disease_id"] == "OMIM:154700"].set_index("hpo_id")
    # n/m frequencies become fractions; a missing frequency takes the configured default (0.5)
    assert marfan.loc["HP:0430043", "frequency"] == pytest.approx(16 / 21)
    assert marfan.loc["HP:0005136", "frequency"] == pytest.approx(0.5)
    assert not marfan.loc["HP:0005136", "frequency_known"]
    orpha = ann[ann["disease_id"] == "ORPHA:558"].set_index("hpo_id")
    assert orpha.loc["HP:0001519", "frequency"] == pytest.approx(0.895)  # very frequent
    diseases = knowledge.diseases.set_index("disease_id")
    assert diseases.loc["OMIM:154700", "name"] == "Marfan syndrome"
    assert "HP:0000006" in diseases.loc["OMIM:154700", "inheritance"]  # autosomal dominant
    assert set(diseases["database"]) == {"OMIM", "ORPHA", "DECIPHER"}
    assert len(diseases) > 12_000


def test_negated_annotations_are_kept(knowledge):
    ann = knowledge.annotations
    negated = ann[ann["negated"]]
    assert len(negated) > 500
    assert ((negated["disease_id"] == "ORPHA:1401") & (negated["hpo_id"] == "HP:0001270")).any()


def test_parse_hpoa_names_the_bad_row(tmp_path):
    header = "database_id\tdisease_name\tqualifier\thpo_id\treference\tevidence\tonset\tfrequency\tsex\tmodifier\taspect\tbiocuration\n"
    good = "OMIM:1\tD\t\tHP:0001250\tPMID:1\tPCS\t\t1/2\t\t\tP\tx\n"
    bad = "OMIM:1\tD\t\tHP:0001263\tPMID:1\tPCS\t\tsometimes\t\t\tP\tx\n"
    path = tmp_path / "phenotype.hpoa"
    path.write_text("#version: test\n" + header + good + bad)
    with pytest.raises(ValueError, match=r"data row 2, field frequency"):
        hpo.parse_hpoa(path)
    path.write_text(header + good)
    table = hpo.parse_hpoa(path)
    assert table.loc[0, "frequency"] == 0.5 and table.loc[0, "disease_id"] == "OMIM:1"


def test_sex_specific_diseases(knowledge):
    diseases = knowledge.diseases.set_index("disease_id")
    assert diseases.loc["OMIM:620897", "sex_specific"] == "FEMALE"  # Ovarian dysgenesis 11
    assert diseases.loc["OMIM:154700", "sex_specific"] == ""  # Marfan syndrome affects both sexes
    terms = knowledge.terms.set_index("id")
    assert terms.loc["HP:0000786", "sex"] == "FEMALE"  # Primary amenorrhea
    assert terms.loc["HP:0000028", "sex"] == "MALE"  # Cryptorchidism


def test_term_matrix_and_rows_by_table(knowledge):
    """Findings -> patients x terms (aliases resolved, duplicates once, ancestors when propagated, unknown ids
    ignored), and rows_by_table gives rows @ table.T for one row (dense path) and for many (sparse path)."""
    import numpy as np
    from scipy import sparse

    from dxlab.features.terms import DENSE_ROWS, TermEncoder, rows_by_table

    enc = TermEncoder(knowledge)
    alias = next(iter(enc.aliases))
    marfan = ["HP:0001166", "HP:0001083", "HP:0001166", "HP:9999999"]
    m = enc.matrix([marfan, [alias], []], propagate=False)
    assert m.shape == (3, enc.n_terms) and m.has_canonical_format
    assert sorted(enc.term_ids[m[0].indices]) == ["HP:0001083", "HP:0001166"]
    assert list(enc.term_ids[m[1].indices]) == [enc.aliases[alias]] and m[2].nnz == 0
    up = enc.matrix([marfan], propagate=True)
    assert {"HP:0000001", "HP:0001166"} <= set(enc.term_ids[up.indices]) and set(up.data) == {1.0}
    rng = np.random.default_rng(0)
    table = sparse.random(50, enc.n_terms, density=0.01, format="csr", dtype=np.float32, random_state=1)
    for n in (1, DENSE_ROWS + 5):
        rows = enc.matrix([list(rng.choice(enc.term_ids, 30)) for _ in range(n)], propagate=True)
        assert np.allclose(rows_by_table(rows, table), (rows @ table.T).toarray(), rtol=1e-5, atol=1e-6)
