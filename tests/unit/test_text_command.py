"""`dxlab annotate` on a small file (good and bad lines), and the learned parts on a tiny made-up corpus."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from dxlab.cli import main
from dxlab.text import Annotator
from dxlab.text.commands import annotate_lines

HYPOTONIA, SEIZURE = "HP:0001252", "HP:0001250"


@pytest.fixture(scope="session")
def annotator(knowledge_dir) -> Annotator:
    return Annotator(learn=False).fit(knowledge_dir)


def test_bad_lines_are_reported_by_number_and_skipped(annotator):
    lines = [
        json.dumps({"doc_id": "a", "text": "Hypotonia; no seizures. His brother had seizures."}),
        "{not json",
        json.dumps({"doc_id": "b"}),
        "",
        json.dumps({"doc_id": "c", "text": "binary\x00data"}),
        json.dumps(["a list"]),
        json.dumps({"doc_id": "d", "text": ""}),
    ]
    out, errors = io.StringIO(), io.StringIO()
    written, skipped = annotate_lines(annotator, lines, out, errors)
    assert (written, skipped) == (2, 4)
    reported = errors.getvalue().splitlines()
    assert [line.split(":")[0] for line in reported] == ["line 2", "line 3", "line 5", "line 6"]
    first, empty = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["doc_id"] == "a" and first["findings"] == [HYPOTONIA]
    assert first["excluded"] == [SEIZURE] and first["family"] == [{"hpo_id": SEIZURE, "relative": "brother"}]
    assert {m["assertion"] for m in first["mentions"]} == {"present", "negated", "family"}
    assert empty == {"doc_id": "d", "findings": [], "excluded": [], "uncertain": [], "family": [], "mentions": []}


def test_seizure_negated_and_affirmed_for_the_patient_is_a_finding(annotator):
    out = io.StringIO()
    annotate_lines(annotator, [json.dumps({"doc_id": 1, "text": "No seizures. Now seizures."})], out, io.StringIO())
    line = json.loads(out.getvalue())
    assert line["findings"] == [SEIZURE] and line["excluded"] == []


def test_the_command_on_a_small_file(tmp_path, knowledge_dir, capsys):
    source = tmp_path / "notes.jsonl"
    source.write_text("\n".join([
        json.dumps({"doc_id": "p1", "text": "Marked hypotonia since birth. Hearing normal.", "age": 1}),
        "garbage",
        json.dumps({"doc_id": "p2", "text": "Denies seizures; possible scoliosis."}),
    ]) + "\n")
    out = tmp_path / "out" / "mentions.jsonl"
    code = main(["annotate", "--input", str(source), "--out", str(out), "--knowledge", str(knowledge_dir),
                 "--no-learned"])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["doc_id"] for line in lines] == ["p1", "p2"]
    assert lines[0]["findings"] == [HYPOTONIA] and lines[0]["excluded"] == ["HP:0000365"]
    assert lines[1]["excluded"] == [SEIZURE] and lines[1]["uncertain"] == ["HP:0002650"]
    texts = ["Marked hypotonia since birth. Hearing normal.", "Denies seizures; possible scoliosis."]
    for line, text in zip(lines, texts):
        assert all(text[m["start"]:m["end"]] == m["text"] for m in line["mentions"])
    err = capsys.readouterr().err
    assert "line 2: skipped" in err and "annotated 2 documents" in err


def _corpus(n: int) -> list[dict]:
    """Made-up annotated documents: 'floppy baby' (no HPO name) annotated as Hypotonia; 'fits' as Seizure."""
    rng = np.random.default_rng(0)
    fillers = ["The child was seen in clinic.", "Growth is unremarkable.", "Parents are well.", "MRI was done."]
    docs = []
    for i in range(n):
        parts, mentions = [], []
        for phrase, term in (("floppy baby", HYPOTONIA), ("recurrent fits", SEIZURE)):
            if rng.random() < 0.7:
                start = sum(len(p) + 1 for p in parts) + len("A ")
                parts.append(f"A {phrase} was noted.")
                mentions.append({"start": start, "end": start + len(phrase), "text": phrase, "hpo_id": term,
                                 "negated": False})
        parts.append(str(rng.choice(fillers)))
        docs.append({"doc_id": str(i), "text": " ".join(parts), "mentions": mentions})
    return docs


def test_learned_names_and_filter_from_annotated_documents(knowledge_dir):
    learned = Annotator(min_learned_count=2, min_learned_precision=0.3).fit(knowledge_dir, documents=_corpus(40))
    assert learned.filter_ is not None and 0.0 < learned.threshold_ < 1.0
    mentions = learned.annotate("Today a floppy baby came in.")
    assert [(m.text, m.hpo_id, m.source) for m in mentions] == [("floppy baby", HYPOTONIA, "learned")]
    assert 0.0 <= mentions[0].score <= 1.0
    plain = Annotator(learn=False).fit(knowledge_dir, documents=_corpus(40))
    assert plain.annotate("Today a floppy baby came in.") == []


def test_saved_annotator_reads_the_same(tmp_path, knowledge_dir):
    fitted = Annotator(min_learned_count=2).fit(knowledge_dir, documents=_corpus(20))
    fitted.save(tmp_path / "annotator.pkl")
    loaded = Annotator.load(tmp_path / "annotator.pkl")
    text = "A floppy baby; no recurrent fits. His sister had seizures."
    assert loaded.annotate(text) == fitted.annotate(text)


def test_the_filter_trees_match_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from dxlab.text.learn import Trees

    rng = np.random.default_rng(1)
    X = rng.random((300, 4))
    y = (X[:, 0] + 0.5 * rng.random(300) > 0.8).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    np.testing.assert_allclose(Trees(model).predict_proba(X), model.predict_proba(X), atol=1e-12)
