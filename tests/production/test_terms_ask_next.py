"""The clinician page's API: autocomplete over HPO labels and synonyms (`GET /v1/terms`), what to ask next
(`POST /v1/predict?ask_next=N`: expected information gain under the model's own likelihoods), and the page itself
(`GET /`: packaged static files, a Content-Security-Policy, no third-party reference, under 300 KB)."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from dxlab.data.schema import read_parquet
from dxlab.serving.api import STATIC, WithoutQueryStrings, app_from_config
from dxlab.serving.ask_next import NextQuestions, information_gain
from dxlab.serving.scorer import Scorer
from dxlab.serving.terms import TermIndex

ARACHNODACTYLY, AORTIC_ROOT_ANEURYSM = "HP:0001166", "HP:0002616"


@pytest.fixture(scope="module")
def client(prod_project):
    _, cfg = prod_project
    with TestClient(app_from_config(cfg)) as c:
        yield c


@pytest.fixture(scope="module")
def example(prod_project):
    root, _ = prod_project
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    return {"findings": list(test["findings"].iloc[0]), "excluded": list(test["excluded"].iloc[0]), "age": 7.5,
            "sex": "F"}


# -- information gain -------------------------------------------------------------------------------------------
def test_gain_is_higher_for_a_finding_that_splits_the_top_diseases():
    prior = np.array([0.5, 0.3, 0.2])
    shared = [0.9, 0.9, 0.9]  # every leading disease has it: the answer moves nothing
    split = [0.9, 0.05, 0.05]  # the first has it, the others do not
    partial = [0.9, 0.9, 0.05]
    gain = information_gain(prior, np.array([shared, split, partial]))
    assert gain[0] == pytest.approx(0.0, abs=1e-9)
    assert gain[1] > gain[0] and gain[2] > gain[0]
    entropy = -(prior * np.log2(prior)).sum()
    assert (gain <= entropy + 1e-9).all()
    # a perfect test of a two-way tie answers one bit
    assert information_gain(np.array([0.5, 0.5]), np.array([[1.0, 0.0]]))[0] == pytest.approx(1.0)


def test_the_models_likelihoods_rank_a_splitting_finding_above_a_shared_one(prod_project):
    """On the tiny project's model: a broader finding every leading disease has (an ancestor of a recorded one,
    scored with the same likelihoods) gains less than the first suggestion, which not all of them have."""
    root, cfg = prod_project
    scorer = Scorer.from_config(cfg)
    patient = read_parquet(root / "data" / "processed" / "test.parquet").iloc[[0]].reset_index(drop=True)
    findings, excluded = list(patient["findings"].iloc[0]), list(patient["excluded"].iloc[0])
    top = scorer.answer(patient)[0]["diagnoses"]
    ids, probs = [d["disease_id"] for d in top], [d["probability"] for d in top]
    questions = NextQuestions(scorer.handle.model, scorer.names)
    core = scorer.handle.model.core_
    column = {d: i for i, d in enumerate(questions.classes)}
    diseases = np.asarray([column[d] for d in ids])
    broader = np.asarray(sorted({int(a) for t in findings if t in core.encoder_.index
                                 for a in questions._ancestors(core.encoder_.index[t])}))
    broader = broader[questions.phenotype[broader]]
    p_broader = questions.probabilities(broader, diseases)
    shared = int(np.argmax(p_broader.min(axis=1)))
    assert p_broader[shared].min() >= 0.5  # every leading disease usually has it
    shared_gain = information_gain(np.asarray(probs), p_broader[[shared]])[0]
    (best, *_) = questions.suggest(findings, excluded, ids, probs, 5)
    assert best["expected_gain"] > shared_gain
    assert len(best["diseases"]) < len(ids)  # it splits the leading diseases
    # the probabilities are the core's own: exp(best-match log LR) x background, capped
    term = core.encoder_.index[best["hpo_id"]]
    expected = np.exp(core.pair_log_lr(np.full(len(diseases), term), diseases)) * core.background_[term]
    assert np.allclose(questions.probabilities(np.asarray([term]), diseases)[0],
                       np.minimum(expected, core.max_frequency), rtol=1e-5)


def test_ask_next_in_the_predict_answer(client, example):
    r = client.post("/v1/predict?ask_next=5", json=example)
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    asked = pred["ask_next"]
    assert 1 <= len(asked) <= 5
    gains = [s["expected_gain"] for s in asked]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
    top = {d["disease_id"] for d in pred["diagnoses"]}
    assert all(s["name"] and {d["disease_id"] for d in s["diseases"]} <= top for s in asked)
    recorded = set(example["findings"]) | set(example["excluded"])
    assert not recorded & {s["hpo_id"] for s in asked}
    # answered: the suggestion is no longer asked, present or absent; nor is anything it implies
    first = asked[0]["hpo_id"]
    for field in ("findings", "excluded"):
        again = client.post("/v1/predict?ask_next=5", json={**example, field: example[field] + [first]})
        assert first not in {s["hpo_id"] for s in again.json()["predictions"][0]["ask_next"]}
    # without the parameter the answer is as before
    assert client.post("/v1/predict", json=example).json()["predictions"][0]["ask_next"] is None
    assert client.post("/v1/predict?ask_next=11", json=example).status_code == 422


# -- autocomplete -------------------------------------------------------------------------------------------------
def test_term_index_ranking():
    terms = pd.DataFrame({
        "id": ["HP:0000118", "HP:1", "HP:2", "HP:3", "HP:4", "HP:0000005"],
        "name": ["Phenotypic abnormality", "Seizure", "Focal seizure", "Arachnodactyly", "Long fingers",
                 "Mode of inheritance"],
        "synonyms": [[], ["Epileptic seizure"], [], ["Spider fingers"], [], ["Inheritance"]],
        "ic": [0.0, 2.0, 5.0, 6.0, 4.0, 0.1],
        "ancestors": [["HP:0000118"], ["HP:0000118", "HP:1"], ["HP:0000118", "HP:1", "HP:2"], ["HP:0000118", "HP:3"],
                      ["HP:0000118", "HP:4"], ["HP:0000005"]]})
    index = TermIndex(terms)
    ids = lambda q, **kw: [t["hpo_id"] for t in index.search(q, **kw)]  # noqa: E731
    assert ids("seizure") == ["HP:1", "HP:2"]  # the exact name first, then by information content
    assert ids("sei") == ["HP:1", "HP:2"]  # a name starting with the query before a later word
    assert ids("fing") == ["HP:4", "HP:3"]  # a name match before a synonym match
    assert index.search("spid fing")[0] == {"hpo_id": "HP:3", "name": "Arachnodactyly", "synonym": "Spider fingers",
                                            "ic": 6.0}
    assert ids("epi") == ["HP:1"] and ids("xyz") == []
    assert ids("inheritance") == [] and ids("inheritance", phenotype_only=False) == ["HP:0000005"]
    assert ids("HP:0000118") == [] and ids("Phenotypic") == []  # the root is no finding
    assert ids("hp:0000005", phenotype_only=False) == ["HP:0000005"]
    assert ids("s", limit=1) == ["HP:1"]


def test_terms_endpoint(client):
    r = client.get("/v1/terms", params={"q": "aort roo", "limit": 5})
    assert r.status_code == 200, r.text
    assert r.json()["terms"][0]["hpo_id"] == AORTIC_ROOT_ANEURYSM
    names = [t["name"].lower() for t in client.get("/v1/terms", params={"q": "arachno"}).json()["terms"]]
    assert "arachnodactyly" in names
    found = client.get("/v1/terms", params={"q": ARACHNODACTYLY}).json()["terms"]
    assert [t["hpo_id"] for t in found] == [ARACHNODACTYLY]
    for params in ({"q": ""}, {"q": "a", "limit": 0}, {"q": "a", "limit": 51}, {}):
        assert client.get("/v1/terms", params=params).status_code == 422


def test_autocomplete_is_fast_for_any_prefix(client):
    """Under 30 ms a query on the full knowledge (the index itself, without HTTP): every one- and two-letter
    prefix, the worst case (the most labels match)."""
    index = client.app.state.terms["terms"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    timings = []
    for query in [*letters, *(a + b for a in letters for b in "aeiou")]:
        start = time.perf_counter()
        index.search(query, 10)
        timings.append(time.perf_counter() - start)
    assert np.percentile(timings, 95) < 0.030, f"p95 {np.percentile(timings, 95) * 1000:.1f} ms"


# -- the page -------------------------------------------------------------------------------------------------------
def test_the_page_is_served_with_a_content_security_policy(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert r.headers["referrer-policy"] == "no-referrer"
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text):
        served = client.get(asset)
        assert served.status_code == 200 and "default-src 'self'" in served.headers["content-security-policy"]
    # no third-party reference anywhere in the packaged files, nothing stored in the browser, under 300 KB
    files = [p for p in STATIC.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css"}
    text = "\n".join(p.read_text() for p in files)
    assert not re.search(r'(?:src|href)\s*=\s*"(?:https?:)?//', text)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", text)
    assert "localStorage" not in (STATIC / "app.js").read_text().replace("Nothing is written to localStorage", "")
    assert "document.cookie" not in (STATIC / "app.js").read_text()
    assert sum(p.stat().st_size for p in files) < 300_000


def test_the_access_log_keeps_no_query_string():
    """What a clinician types into the autocomplete never reaches the logs (uvicorn's access-log record)."""
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/v1/terms?q=arachnodactyly&limit=10", "1.1", 200), None)
    assert WithoutQueryStrings().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/terms HTTP/1.1" 200'
