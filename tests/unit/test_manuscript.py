"""The manuscript stage: a PDF from a small fake reports folder (the real file names and keys), numbers read from the
files, missing and unreadable inputs named instead of crashing, and the same bytes from the same inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("reportlab")

from omegaconf import OmegaConf  # noqa: E402

from dxlab.evaluation.manuscript import build_manuscript  # noqa: E402

STRATA = {"common_min": 100, "mid_min": 10}


def _slice(n: int, top1: float, top3: float, top10: float, mrr: float, ece: float, brier: float) -> dict:
    return {"n": n, "top1": top1, "top3": top3, "top10": top10, "mrr": mrr, "ece": ece, "brier": brier,
            "mean_p_top": 0.5, "n_known": n - 100, "known_top1": 0.7012, "known_top10": 0.8123}


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def fake_reports(root: Path) -> Path:
    """A reports folder shaped like the pipeline's, with distinctive numbers; text/metrics.json is missing and
    anomaly/metrics.json is broken."""
    reports = root / "reports"
    real = _slice(1234, 0.6123, 0.6789, 0.7345, 0.7071, 0.0412, 0.4321)
    _write(reports / "evaluation/case_reports/metrics.json", {
        "overall": real,
        "by_stratum": {"unseen": _slice(600, 0.4567, 0.5, 0.55, 0.5, 0.07, 0.6),
                       "rare": _slice(334, 0.7123, 0.8, 0.85, 0.8, 0.06, 0.3),
                       "mid": _slice(300, 0.9012, 0.95, 0.97, 0.93, 0.09, 0.15)},
        "by_sex": {"female": _slice(555, 0.5987, 0.65, 0.7, 0.64, 0.05, 0.47),
                   "male": _slice(679, 0.6234, 0.7, 0.75, 0.68, 0.04, 0.45)},
        "by_age_band": {"under 1 year": _slice(111, 0.6611, 0.7, 0.74, 0.68, 0.08, 0.44),
                        "age not reported": _slice(1123, 0.6077, 0.65, 0.68, 0.62, 0.07, 0.49)},
        "by_knowledge": {"annotated only": _slice(1034, 0.7, 0.75, 0.8, 0.72, 0.05, 0.4),
                         "neither: no model can know it": _slice(200, 0.0, 0.0, 0.0, 0.0, 0.23, 1.1)},
        "side_by_side": {"without the reranker": {"n": 1234, "top1": 0.5888, "top3": 0.65, "top10": 0.7,
                                                  "mrr": 0.63},
                         "without excluded-finding mentions": {"n": 1234, "top1": 0.5111, "top3": 0.6,
                                                               "top10": 0.66, "mrr": 0.57}},
        "context": {"model": "diagnostic", "universe_size": 9876, "knowledge_version": "HPO 2099-01-01 sha256:abc",
                    "training": "case_reports (1,234 rows)",
                    "reranker": {"training_cases": 4321, "importance": {"score_to_best": 0.6}},
                    "params": {"profiles": {"case_pseudocount": 8.0}, "reranker": {"n_candidates": 2345},
                               "weights": {"observed": 1.0, "mention": 0.5, "neighbours": 10.0},
                               "likelihood": {"partial_match": 0.01}}},
    })
    _write(reports / "evaluation/case_reports/model_card.md",
           "# Model card: diagnostic\n\nGenerated with [the report](report.md); do not edit.\n\n"
           "**Intended use.** Decision support, not a diagnosis.\n\n"
           "| sex | cases | top-1 |\n|---|---|---|\n| female | 555 | 59.9% |\n")
    simulated = _slice(1496, 0.8771, 0.95, 0.97, 0.91, 0.2468, 0.2)
    _write(reports / "metrics.json", {
        "bayes": {"case_reports": {"overall": _slice(1234, 0.5222, 0.6, 0.65, 0.57, 0.057, 0.598)},
                  "hpo_cohort_test": {"overall": _slice(1496, 0.75, 0.83, 0.88, 0.8, 0.157, 0.367)}},
        "diagnostic": {"case_reports": {"overall": real},
                       "hpo_cohort_test": {"overall": simulated, "by_stratum": {"rare": simulated}}},
    })
    _write(reports / "approval.json", {
        "model": "diagnostic", "registered_model": "dxlab", "version": 42, "alias": "champion",
        "validated_on": ["case_reports", "hpo_cohort_test"], "passed": True, "reasons": [],
        "checks": ["case_reports.overall.top1 = 0.6123 >= 0.5: ok",
                   "case_reports.overall.top1 = 0.6123 vs champion 0.6505782918149466 (tolerance 0.01): ok"],
        "not_measured": []})
    _write(reports / "stages/simulate.json", {"simulated": True, "n_patients": 6543, "n_diseases": 210, "n_files": 30,
                                              "max_patients_per_disease": 1021, "diseases_under_10_patients": 93,
                                              "n_injected_bad_rows": 18})
    _write(reports / "stages/ingest.json", {"n_rows": 7777, "sources": {"hpo_cohort": {"n_rows": 6543,
                                                                                      "n_parse_issues": 6}}})
    _write(reports / "stages/validate.json", {"sources": {"hpo_cohort": {"n_valid": 6525, "n_quarantined": 18}}})
    _write(reports / "stages/preprocess.json", {"sources": {
        "hpo_cohort": {"evaluation": "holdout", "n_train": 4486, "n_test": 1496, "n_diseases": 200},
        "case_reports": {"evaluation": "grouped", "n_train": 1234, "n_test": 0, "n_groups": 3217,
                         "n_diseases": 510}}})
    _write(reports / "stages/knowledge.json", {"n_terms": 19393, "n_diseases": 12920, "n_annotations": 277174,
                                               "n_negated_annotations": 711, "ontology_release": "2099-01-01",
                                               "share_annotations_with_frequency": 0.7486, "default_frequency": 0.5,
                                               "releases": {"2099-01-01": {"source": "a wheel", "n_diseases": 12801,
                                                                           "n_annotations": 274385}}})
    _write(reports / "stages/train.json", {"diagnostic": {"n_classes": 9876, "n_training_rows": 5720,
                                                          "training_rows_by_source": {"case_reports": 1234,
                                                                                      "hpo_cohort": 4486},
                                                          "fit_seconds": 55.9}})
    _write(reports / "stages/anomaly.json", {"n_test": 1496, "n_injected": 150, "detector": "auto",
                                             "roc_auc": 0.9771, "precision": 0.481, "recall": 0.9267,
                                             "real_cases": {"case_reports": {"n_cases": 1234, "flag_rate": 0.0116,
                                                                             "configured_rate": 0.05}}})
    _write(reports / "anomaly/metrics.json", "{not json")  # unreadable: named, not fatal
    _write(reports / "knowledge_coverage.md", "# Coverage\n\n| knowledge | annotated |\n| --- | ---: |\n"
                                              "| merged | 81.7% (3,676) |\n")
    _write(reports / "plots/model/case_reports/reliability.csv",
           "bin,mean_confidence,accuracy,count\n0,0.05,0.04,10\n1,0.5,0.52,10\n2,0.95,0.93,10\n")
    from PIL import Image as PILImage  # reportlab's own dependency
    figure = reports / "evaluation/case_reports/figures/topk.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (40, 30), (200, 30, 30)).save(figure)
    bench = root / "bench"
    _write(bench / "production.md", "# Production benchmarks\n\nTarget: 100,000 patients in under 60 s on 2 cores "
                                    "with the default champion.\n")
    _write(bench / "production.json", {"machine": "2 cores", "batch": [
        {"label": "local", "n_rows": 100000, "seconds": 251.9, "patients_per_second": 397.0},
        {"label": "local, 2 processes", "n_rows": 100000, "seconds": 145.2, "patients_per_second": 688.7}]})
    return reports


def pdf_text(path: Path) -> str:
    """The PDF's text: with pypdf when installed, else the uncompressed content streams (pageCompression=0)."""
    try:
        from pypdf import PdfReader
    except ImportError:
        raw = path.read_bytes().decode("latin-1")
        return re.sub(r"\\([()\\])", r"\1", raw)
    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def test_manuscript_reads_every_number_from_the_reports(tmp_path: Path):
    reports = fake_reports(tmp_path)
    built = build_manuscript(reports, tmp_path / "out" / "manuscript.pdf", bench_dir=tmp_path / "bench",
                             strata=STRATA, calibration_bins=15, page_compression=False)
    pdf = built["path"]
    assert pdf.exists() and pdf.read_bytes().startswith(b"%PDF")
    assert built["pages"] >= 3
    text = pdf_text(pdf)
    for expected in ("61.2%", "73.5%", "0.707", "0.041",         # real case reports, overall
                     "1,234", "45.7%", "71.2%", "90.1%",         # cases, by stratum
                     "59.9%", "62.3%", "66.1%",                   # by sex, by age band
                     "52.2%",                                     # the baseline line
                     "87.7%", "0.247",                            # the simulated test split
                     "9,876", "4,321", "2,345",                   # methods: universe, reranker
                     "version 42", "champion", "0.651",           # approval (long floats rounded)
                     "6,543", "3,217",                            # data: simulated cohort, publications
                     "19,393", "81.7% (3,676)",                   # knowledge, coverage markdown table
                     "0.977",                                     # anomaly summary
                     "145.2", "Production target missed",         # production target from bench/
                     "Decision support, not a diagnosis"):        # the model card
        assert expected in text, expected
    # a missing and an unreadable input are named, not fatal
    assert built["inputs"]["reports/text/metrics.json"] == "missing"
    assert built["inputs"]["reports/anomaly/metrics.json"].startswith("unreadable")
    assert built["inputs"]["reports/evaluation/case_reports/figures/reliability.png"] == "missing"
    assert "reports/text/metrics.json" in text and "Not available:" in text
    assert "Figure not available:" in text
    assert built["inputs"]["reports/metrics.json"] == "read"


def test_manuscript_is_deterministic(tmp_path: Path):
    reports = fake_reports(tmp_path)
    for compression in (False, True):
        first = build_manuscript(reports, tmp_path / "a.pdf", bench_dir=tmp_path / "bench", strata=STRATA,
                                 page_compression=compression)["path"].read_bytes()
        second = build_manuscript(reports, tmp_path / "b.pdf", bench_dir=tmp_path / "bench", strata=STRATA,
                                  page_compression=compression)["path"].read_bytes()
        assert first == second


def test_manuscript_without_real_case_reports_still_builds(tmp_path: Path, monkeypatch):
    """`make repro` without the shared case reports: no real-patient line, a PDF that says so."""
    reports = fake_reports(tmp_path)
    for rel in ("evaluation/case_reports/metrics.json", "evaluation/case_reports/model_card.md"):
        (reports / rel).unlink()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "946684800")  # 2000-01-01: the date shown comes from it
    built = build_manuscript(reports, tmp_path / "m.pdf", bench_dir=None, page_compression=False)
    text = pdf_text(built["path"])
    assert "No result on real patients" in text and "2000-01-01" in text
    assert built["inputs"]["reports/evaluation/case_reports/metrics.json"] == "missing"
    assert "87.7%" in text  # the simulated line is still there


def test_inputs_of_an_unexpected_shape_spoil_their_section_not_the_document(tmp_path: Path):
    reports = fake_reports(tmp_path)
    _write(reports / "approval.json", "[1, 2]")                                   # JSON, but not an object
    _write(reports / "evaluation/case_reports/metrics.json", {"by_sex": 3})      # no "overall"
    built = build_manuscript(reports, tmp_path / "m.pdf", bench_dir=tmp_path / "bench", page_compression=False)
    text = pdf_text(built["path"])
    assert built["inputs"]["reports/approval.json"].startswith("unreadable")
    assert built["sections_failed"] and "could not be built" in text
    assert "87.7%" in text  # the simulated line, from an intact file, is still there


def test_stage_entry_point_writes_reports_manuscript_pdf(tmp_path: Path, monkeypatch):
    from dxlab.stages import manuscript as stage

    reports = fake_reports(tmp_path)
    monkeypatch.setenv("DXLAB_ROOT", str(tmp_path))  # bench/ is looked up at the project root
    cfg = OmegaConf.create({"paths": {"reports": str(reports)}, "model": {"name": "diagnostic"},
                            "evaluate": {"strata": STRATA, "calibration_bins": 15}})
    metrics = stage.run(cfg)
    assert (reports / "manuscript.pdf").read_bytes().startswith(b"%PDF")
    assert metrics["pages"] >= 3 and metrics["inputs_missing"] >= 1
