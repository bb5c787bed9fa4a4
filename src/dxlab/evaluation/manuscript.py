"""The manuscript: one PDF a review committee reads (reports/manuscript.pdf), built offline from the generated reports.

`build_manuscript(reports_dir, out_path)` reads only files other stages and commands wrote (reports/*.json,
reports/**/*.md, the figures, bench/production.*) and lays them out with reportlab: title, methods, data, results on
the real case reports (and the simulated test split as a second, clearly labelled line), approval, anomaly detection,
clinical notes, limitations, the model card. Every number comes from those files; the prose around them is written
here. Each section names the files its numbers come from, and a missing or unreadable file is named where its
numbers would be: a run without the real case reports still gets a PDF that says what it lacks.

The PDF is invariant (reportlab's `invariant=1`: fixed creation date and document id), and the date it shows is
the newest input's modification day (or SOURCE_DATE_EPOCH when set), so the same inputs give the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (Image, KeepTogether, ListFlowable, ListItem, PageBreak, Paragraph,
                                SimpleDocTemplate, Spacer, Table, TableStyle)

from dxlab.evaluation.case_report import DESCRIPTIONS, TARGETS
from dxlab.evaluation.cases import BEFORE_RERANK

log = logging.getLogger(__name__)

# what writes each input (said when it is missing); paths are relative to the reports folder unless "bench/..."
WRITERS = {
    "stages/simulate.json": "the simulate stage",
    "stages/ingest.json": "the ingest stage",
    "stages/validate.json": "the validate stage",
    "stages/preprocess.json": "the preprocess stage",
    "stages/knowledge.json": "the knowledge stage",
    "stages/train.json": "the train stage",
    "stages/anomaly.json": "the anomaly stage",
    "knowledge_coverage.md": "`make knowledge-coverage` (bench/knowledge_coverage.py)",
    "evaluation/case_reports/metrics.json": "the evaluate stage, when the real case reports "
                                            "(../shared/data/phenopackets/cases.jsonl) were read",
    "evaluation/case_reports/model_card.md": "the evaluate stage, when the real case reports were read",
    "metrics.json": "the evaluate stage",
    "approval.json": "the approve stage",
    "anomaly/metrics.json": "the anomaly stage",
    "text/metrics.json": "the text_eval stage",
    "bench/production.md": "`make bench` (bench/production.py)",
    "bench/production.json": "`make bench` (bench/production.py)",
}
CASE_METRICS = "evaluation/case_reports/metrics.json"
MODEL_CARD = "evaluation/case_reports/model_card.md"
# (path under the reports folder, caption): the figures the results section shows when they exist
FIGURES = [
    ("evaluation/case_reports/figures/topk.png",
     "Top-k accuracy on the real case reports, the diagnostic model and each part alone or switched off."),
    ("evaluation/case_reports/figures/reliability.png",
     "Reliability of the top probability on the real case reports."),
    ("evaluation/case_reports/figures/rank_histogram.png",
     "Rank of the true disease on the real case reports."),
]
ANOMALY_FIGURE = ("anomaly/figures/anomaly_recall_by_kind.png",
                  "Recall of the detectors by kind of injected anomaly (simulated test split).")
RELIABILITY_CSVS = [("plots/model/case_reports/reliability.csv", "real case reports"),
                    ("plots/model/hpo_cohort_test/reliability.csv", "simulated test split")]
SLICE_COLUMNS = ["cases", "top-1", "top-3", "top-10", "MRR", "ECE", "Brier"]

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 2 * cm
FRAME_WIDTH = PAGE_WIDTH - 2 * MARGIN
# the core PDF fonts encode cp1252: what it lacks is written the way the reports' plain-text twins write it
_ASCII = {"≥": ">=", "≤": "<=", "→": "->", "−": "-", "×": "x", "≈": "~", "✓": "ok", "✗": "no", "·": "-"}


# ---------------------------------------------------------------------------------------------- numbers and text

def pct(x) -> str:
    return "-" if not _finite(x) else f"{100 * x:.1f}%"


def num(x, digits: int = 3) -> str:
    return "-" if not _finite(x) else f"{x:.{digits}f}"


def count(x) -> str:
    return "-" if not _finite(x) else f"{int(x):,}"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def drawable(text) -> str:
    """Text the core fonts can draw (cp1252)."""
    text = "".join(_ASCII.get(ch, ch) for ch in str(text))
    return text.encode("cp1252", errors="replace").decode("cp1252")


def plain(text) -> str:
    """Drawable text with Paragraph markup escaped."""
    return drawable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def inline_markdown(text: str) -> str:
    """`code`, **bold**, *italic* and [links](...) of one Markdown line as Paragraph markup."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f'<font face="Courier">{plain(part[1:-1])}</font>')
            continue
        part = plain(part)
        part = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", part)
        part = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", part)
        out.append(part)
    return "".join(out)


# ---------------------------------------------------------------------------------------------- inputs

class Inputs:
    """The files the manuscript reads, each read once, with what became of it (read / missing / unreadable)."""

    def __init__(self, reports_dir: Path, bench_dir: Path | None):
        self.reports_dir, self.bench_dir = Path(reports_dir), (Path(bench_dir) if bench_dir else None)
        self.status: dict[str, str] = {}
        self.files: dict[str, Path] = {}
        self._cache: dict[str, object] = {}

    def label(self, rel: str) -> str:
        return rel if rel.startswith("bench/") else f"{self.reports_dir.name}/{rel}"

    def path(self, rel: str) -> Path | None:
        if rel.startswith("bench/"):
            return self.bench_dir / rel[len("bench/"):] if self.bench_dir else None
        return self.reports_dir / rel

    def _load(self, rel: str, parse):
        if rel in self._cache:
            return self._cache[rel]
        path, value = self.path(rel), None
        if path is None or not path.is_file():
            self.status[self.label(rel)] = "missing"
        else:
            try:
                value = parse(path)
                self.status[self.label(rel)] = "read"
                self.files[self.label(rel)] = path
            except (OSError, ValueError, UnicodeDecodeError) as error:
                self.status[self.label(rel)] = f"unreadable ({type(error).__name__})"
        self._cache[rel] = value
        return value

    def json(self, rel: str) -> dict | None:
        def parse(p: Path) -> dict:
            value = json.loads(p.read_text())
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
        return self._load(rel, parse)

    def text(self, rel: str) -> str | None:
        return self._load(rel, lambda p: p.read_text())

    def csv(self, rel: str) -> list[dict] | None:
        def parse(p: Path):
            with p.open(newline="") as handle:
                return list(csv.DictReader(handle))
        return self._load(rel, parse)

    def figure(self, rel: str) -> Path | None:
        def parse(p: Path):
            ImageReader(str(p)).getSize()  # a broken image is "unreadable", not a crash
            return p
        return self._load(rel, parse)

    def missing_note(self, rel: str) -> str:
        status = self.status.get(self.label(rel), "missing")
        writer = WRITERS.get(rel)
        return (f"<b>Not available:</b> {plain(self.label(rel))} is {status}"
                + (f" (written by {plain(writer)})." if writer else ".") + " This part is left out.")

    def newest(self) -> dt.date:
        """The day the shown results date from: SOURCE_DATE_EPOCH if set, else the newest input's mtime (UTC)."""
        if os.environ.get("SOURCE_DATE_EPOCH", "").strip().isdigit():
            stamp = int(os.environ["SOURCE_DATE_EPOCH"])
        else:
            stamp = max((int(p.stat().st_mtime) for p in self.files.values()), default=0)
        return dt.datetime.fromtimestamp(stamp, tz=dt.timezone.utc).date()


# ---------------------------------------------------------------------------------------------- layout helpers

def styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName="Helvetica", fontSize=9.5, leading=12.5,
                          spaceAfter=5)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontName="Helvetica-Bold", fontSize=16, leading=20,
                                spaceAfter=8),
        "subtitle": ParagraphStyle("subtitle", parent=body, alignment=TA_CENTER, fontSize=10, leading=13),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontName="Helvetica-Bold", fontSize=14, leading=17,
                             spaceBefore=10, spaceAfter=6, keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontName="Helvetica-Bold", fontSize=11.5, leading=14,
                             spaceBefore=8, spaceAfter=4, keepWithNext=1),
        "h3": ParagraphStyle("h3", parent=base["Heading3"], fontName="Helvetica-Bold", fontSize=10, leading=13,
                             spaceBefore=6, spaceAfter=3, keepWithNext=1),
        "body": body,
        "source": ParagraphStyle("source", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#444444"),
                                 spaceBefore=2, spaceAfter=6),
        "missing": ParagraphStyle("missing", parent=body, textColor=colors.HexColor("#8a1c1c")),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8.5, leading=11, alignment=TA_CENTER,
                                  textColor=colors.HexColor("#333333"), spaceAfter=10),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=9.8, spaceAfter=0),
        "cell_head": ParagraphStyle("cell_head", parent=body, fontName="Helvetica-Bold", fontSize=8, leading=9.8,
                                    spaceAfter=0),
    }


class Writer:
    """The story being laid out, with the shared styles and the inputs."""

    def __init__(self, inputs: Inputs, model: str = "model"):
        self.inputs, self.style, self.story, self.model = inputs, styles(), [], model

    def h(self, text: str, level: int = 1) -> None:
        self.story.append(Paragraph(text, self.style[f"h{level}"]))

    def p(self, text: str, style: str = "body") -> None:
        self.story.append(Paragraph(text, self.style[style]))

    def sources(self, *rels: str, extra: str = "") -> None:
        """The line under a section saying where its numbers come from, and what of it was missing."""
        names = []
        for rel in rels:
            label = self.inputs.label(rel)
            status = self.inputs.status.get(label, "not read")
            names.append(f'<font face="Courier">{plain(label)}</font>'
                         + ("" if status == "read" else f" (<b>{plain(status)}</b>)"))
        self.p("Source: " + "; ".join(names) + (f". {extra}" if extra else "."), "source")

    def missing(self, rel: str) -> None:
        self.p(self.inputs.missing_note(rel), "missing")

    def table(self, header: Sequence[str], rows: Sequence[Sequence], widths: Sequence[float] | None = None,
              first_share: float = 0.34, bold_first_row: bool = False) -> None:
        self.story.append(self.make_table(header, rows, widths, first_share, bold_first_row))

    def make_table(self, header: Sequence[str], rows: Sequence[Sequence], widths: Sequence[float] | None = None,
                   first_share: float = 0.34, bold_first_row: bool = False) -> Table:
        """A real table: header row, cells as Paragraphs (they wrap), numbers right-aligned."""
        n = len(header)
        if widths is None:
            first = FRAME_WIDTH * (first_share if n > 1 else 1.0)
            widths = [first] + [(FRAME_WIDTH - first) / (n - 1)] * (n - 1) if n > 1 else [first]
        right = ParagraphStyle("cell_right", parent=self.style["cell"], alignment=2)
        right_head = ParagraphStyle("cell_head_right", parent=self.style["cell_head"], alignment=2)

        def is_number(value) -> bool:
            text = re.sub(r"<[^>]+>", "", str(value)).strip()
            return bool(re.fullmatch(r"[-+]?[\d,.]+%?( \([-+]?[\d,.]+%?\))?|-|", text))

        # a column of numbers (dashes and blanks allowed) is right-aligned, its header too
        numeric = [col > 0 and all(is_number(row[col]) for row in rows if col < len(row)) for col in range(n)]

        def cell(value, head: bool, col: int, bold: bool = False):
            style = ((right_head if numeric[col] else self.style["cell_head"]) if head or bold
                     else (right if numeric[col] else self.style["cell"]))
            return Paragraph(str(value), style)

        data = [[cell(inline_markdown(str(h)), True, i) for i, h in enumerate(header)]]
        for r, row in enumerate(rows):
            data.append([cell(v, False, i, bold=bold_first_row and r == 0) for i, v in enumerate(row)])
        table = Table(data, colWidths=list(widths), repeatRows=1, hAlign="LEFT")
        table.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf2")),
            ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.HexColor("#333333")),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor("#333333")),
            ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.HexColor("#333333")),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f7f9")]),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]))
        return table

    def gap(self, height: float = 4) -> None:
        self.story.append(Spacer(1, height))

    def figure(self, rel: str, caption: str, max_width: float = FRAME_WIDTH * 0.82,
               max_height: float = 9.5 * cm) -> bool:
        path = self.inputs.figure(rel)
        if path is None:
            self.p(f"<b>Figure not available:</b> {plain(self.inputs.label(rel))} is "
                   f"{plain(self.inputs.status.get(self.inputs.label(rel), 'missing'))}; skipped.", "missing")
            return False
        width, height = ImageReader(str(path)).getSize()
        scale = min(max_width / width, max_height / height)
        image = Image(str(path), width=width * scale, height=height * scale)
        self.keep_with_caption(image, f"{caption} <font face=\"Courier\" size=\"7.5\">"
                                      f"({plain(self.inputs.label(rel))})</font>")
        return True

    def keep_with_caption(self, flowable, caption: str) -> None:
        # keepWithNext (not KeepTogether) so that a heading before the figure joins the group too
        flowable.keepWithNext = 1
        self.story += [flowable, Paragraph(caption, self.style["caption"])]

    def bullets(self, items: Iterable[str]) -> None:
        self.story.append(ListFlowable([ListItem(Paragraph(text, self.style["body"]), leftIndent=12)
                                        for text in items], bulletType="bullet", start="\u2022", leftIndent=12,
                                       bulletFontSize=8))

    def markdown(self, text: str, top_level: int = 2) -> None:
        """A Markdown report rendered: headings, paragraphs, bullet lists and pipe tables as real tables."""
        blocks: list[tuple[str, list[str]]] = []
        for line in text.splitlines():
            kind = ("table" if line.lstrip().startswith("|") else "bullet" if re.match(r"\s*[-*] ", line)
                    else "heading" if line.startswith("#") else "blank" if not line.strip() else "text")
            if kind in ("table", "text", "bullet") and blocks and blocks[-1][0] == kind:
                blocks[-1][1].append(line)
            else:
                blocks.append((kind, [line]))
        for kind, lines in blocks:
            if kind == "heading":
                depth = len(lines[0]) - len(lines[0].lstrip("#"))
                self.h(inline_markdown(lines[0].lstrip("#").strip()), min(3, top_level + depth - 1))
            elif kind == "text":
                self.p(inline_markdown(" ".join(line.strip() for line in lines)))
            elif kind == "bullet":
                self.bullets(inline_markdown(re.sub(r"^\s*[-*] ", "", line)) for line in lines)
            elif kind == "table":
                rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
                rows = [r for r in rows if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]
                if rows:
                    width = max(len(r) for r in rows)
                    rows = [r + [""] * (width - len(r)) for r in rows]
                    self.table(rows[0], [[inline_markdown(c) for c in r] for r in rows[1:]])
                    self.gap(9)


def slice_rows(slices: Mapping[str, Mapping] | None) -> list[list[str]]:
    return [[plain(name), count(m.get("n")), pct(m.get("top1")), pct(m.get("top3")), pct(m.get("top10")),
             num(m.get("mrr")), num(m.get("ece")), num(m.get("brier"))] for name, m in (slices or {}).items()]


# ---------------------------------------------------------------------------------------------- sections

def title_block(w: Writer) -> list:
    """Title, date, model version (built after the sections, which decide what was read)."""
    inputs, style = w.inputs, w.style
    approval = inputs.json("approval.json") or {}
    cases = inputs.json(CASE_METRICS) or {}
    context = cases.get("context", {})
    version = approval.get("version")
    try:
        dxlab_version = package_version("dxlab")
    except PackageNotFoundError:  # a source tree on the path without installed metadata still builds
        dxlab_version = None
    text = f"Model: <b>{plain(w.model)}</b>"
    if version is not None:
        text += (f", version {plain(version)} of the registered model "
                 f"<font face=\"Courier\">{plain(approval.get('registered_model', ''))}</font>")
        if approval.get("alias"):
            text += f" (alias <font face=\"Courier\">{plain(approval['alias'])}</font>)"
    else:
        text += (f" (version not known: {plain(inputs.label('approval.json'))} is "
                 f"{plain(inputs.status.get(inputs.label('approval.json'), 'missing'))})")
    lines = [text]
    if context.get("knowledge_version"):
        lines.append(f"Knowledge: {plain(context['knowledge_version'])}")
    if dxlab_version:
        lines.append(f"Software: dxlab {plain(dxlab_version)}")
    day = inputs.newest()
    date_source = ("SOURCE_DATE_EPOCH" if os.environ.get("SOURCE_DATE_EPOCH", "").strip().isdigit()
                   else "the newest report read")
    lines.append(f"Date: {day.isoformat()} ({date_source})")
    out = [Paragraph("dxlab: diagnosing rare diseases from HPO phenotype terms", style["title"]),
           Paragraph("Evaluation report for review", style["subtitle"]), Spacer(1, 6)]
    out += [Paragraph(line, style["subtitle"]) for line in lines]
    out.append(Spacer(1, 10))
    return out


def targets_met(o: dict, missed: str) -> str:
    """'top-1 >= 60% (met), top-10 >= 70% (not met), ECE <= 0.05 (met)' for overall metrics `o`."""
    met = {"top1": o.get("top1", 0) >= TARGETS["top1"], "top10": o.get("top10", 0) >= TARGETS["top10"],
           "ece": _finite(o.get("ece")) and o["ece"] <= TARGETS["ece"]}
    return (f"top-1 &gt;= {pct(TARGETS['top1'])} ({'met' if met['top1'] else missed}), top-10 &gt;= "
            f"{pct(TARGETS['top10'])} ({'met' if met['top10'] else missed}), ECE &lt;= {TARGETS['ece']} "
            f"({'met' if met['ece'] else missed})")


def summary(w: Writer) -> None:
    cases = w.inputs.json(CASE_METRICS)
    lines = w.inputs.json("metrics.json")
    approval = w.inputs.json("approval.json")
    w.h("Summary")
    items = []
    if cases:
        o = cases["overall"]
        items.append(f"On <b>{count(o.get('n'))} real published case reports</b>, each scored by parts that never saw "
                     f"its publication, the true disease is ranked first in {pct(o.get('top1'))} of cases and among "
                     f"the first ten in {pct(o.get('top10'))} (MRR {num(o.get('mrr'))}); the expected calibration "
                     f"error of the top probability is {num(o.get('ece'))}. Targets: {targets_met(o, 'not met')}.")
    else:
        items.append(f"No result on real patients: {plain(w.inputs.label(CASE_METRICS))} is "
                     f"{plain(w.inputs.status.get(w.inputs.label(CASE_METRICS), 'missing'))}. Only the simulated "
                     "line below exists, and it shows that the pipeline runs, not that the model works.")
    simulated = ((lines or {}).get(w.model) or {}).get("hpo_cohort_test", {}).get("overall")
    if simulated:
        items.append(f"On the simulated test split ({count(simulated.get('n'))} patients simulated from the same "
                     f"knowledge the model uses) top-1 is {pct(simulated.get('top1'))}: a check that the pipeline "
                     "runs, not evidence of clinical accuracy.")
    if approval:
        items.append(f"Approval: the model {'passed' if approval.get('passed') else 'failed'} its gates and is "
                     f"registered as version {plain(approval.get('version'))} under the alias "
                     f"<font face=\"Courier\">{plain(approval.get('alias'))}</font>.")
    w.bullets(items)
    w.sources(CASE_METRICS, "metrics.json", "approval.json")


def methods(w: Writer, calibration_bins: int | None) -> None:
    cases = w.inputs.json(CASE_METRICS) or {}
    train = w.inputs.json("stages/train.json") or {}
    context = cases.get("context", {})
    params = context.get("params", {})
    weights, likelihood = params.get("weights", {}), params.get("likelihood", {})
    profiles, neighbours = params.get("profiles", {}), params.get("neighbours", {})
    reranker, rerank_info = params.get("reranker", {}), context.get("reranker", {})
    universe = context.get("universe_size") or (train.get(w.model) or {}).get("n_classes")
    neither = next((m for name, m in (cases.get("by_knowledge") or {}).items() if name.startswith("neither")), {})
    total = (cases.get("overall") or {}).get("n")
    unknowable = neither.get("n") / total if _finite(neither.get("n")) and total else None
    w.h("1 Methods")
    w.p("dxlab has <b>one diagnostic model</b> (<font face=\"Courier\">dxlab.models.diagnostic.DiagnosticModel</font>, "
        "a scikit-learn estimator). The model that is evaluated here is the one that is approved, registered and "
        "served. For each patient it returns a probability for every disease in its universe: every disease the "
        "Human Phenotype Ontology (HPO) annotates in OMIM and Orphanet, plus every disease that only the training "
        "cases report"
        + (f", {count(universe)} diseases in this run" if _finite(universe) else "")
        + (f" (knowledge {plain(context['knowledge_version'])})" if context.get("knowledge_version") else "")
        + ". The inputs are the observed findings (HPO terms), the findings reported absent, sex, and age or "
          "onset.")
    w.p("<b>Likelihood core.</b> The score of a disease starts as a sum of log likelihood ratios. Each observed "
        "finding counts by how much more likely it is under the disease than in the background over all diseases. "
        "The disease's annotations are closed up the ontology with a noisy-OR of the annotated frequencies; a "
        "finding that matches only through an ancestor term is penalised"
        + (f" (factor {num(likelihood.get('partial_match'), 2)})" if _finite(likelihood.get("partial_match"))
           else "")
        + ". Excluded findings count as evidence against a disease that usually has them. Case reports also tend "
          "to list absent findings that belong to the disease under discussion, so excluded findings also count as "
          "<i>mentions</i> in favour of that disease. This is a habit of how case reports are written, not of "
          "clinics; the Limitations section comes back to it. Findings the disease is annotated <i>not</i> to have, "
          "the patient's sex and the onset class add their own likelihood ratios.")
    w.p("<b>Learned from cases.</b> The disease profiles mix the annotations"
        + (f" (worth {num(profiles.get('case_pseudocount'), 0)} pseudo-cases)" if _finite(
            profiles.get("case_pseudocount")) else "")
        + " with the findings of the training cases, so a disease known only from case reports can still be "
          "ranked. A second part adds the similarity of the disease's nearest training case from <i>another</i> "
          "publication (an information-content-weighted cosine over findings and excluded findings).")
    w.p("<b>Reranker and calibrator.</b> An XGBoost pairwise ranker reorders the first "
        + (f"{count(reranker.get('n_candidates'))} " if _finite(reranker.get("n_candidates")) else "")
        + "candidates. Its features never include the disease's identity: they are each part's score and gap to "
          "the best candidate, the candidate's rank, how much of the disease's annotation the patient mentions, and "
          "how many training cases and publications report the disease. What it learns can therefore carry over to "
          "diseases it never saw"
        + (f"; it learned from {count(rerank_info.get('training_cases'))} training cases" if _finite(
            rerank_info.get("training_cases")) else "")
        + ". A calibrator then turns scores into probabilities: one temperature, plus a share of probability for "
          "'none of the listed diseases', fitted with a logistic model of how clearly the first candidate stands "
          "out. That share matters because some real cases have a disease that no model built on this knowledge "
          "can know" + (f" ({pct(unknowable)} of the real case reports here)" if _finite(unknowable) else "") + ".")
    w.p("<b>Evaluation without leakage.</b> Every training row belongs to a group; for a case report, the group is "
        "its publication. The reranker and the calibrator learn from grouped folds, so no publication is on both "
        "sides of a split. When a case is scored, the profiles and neighbours leave its publication out, and the "
        "reranker and calibrator used are those fitted without its fold. Each real case is therefore scored by "
        "parts that never saw its publication, and the real-case figures below are cross-validated. Ranks treat "
        "ties fairly: tied diseases share the mean of their ranks, so a tie is never a hit, and a disease outside "
        "the universe counts as a miss. MRR is the mean reciprocal rank. ECE is the expected calibration error of "
        "the top probability"
        + (f" over {calibration_bins} bins" if calibration_bins else "")
        + ". Brier is the multi-class Brier score (0 is perfect, 2 the worst).")
    if weights:
        w.p("The weights of the score's parts as fitted:")
        labels = {"observed": "observed findings", "excluded": "excluded findings read as absent",
                  "mention": "excluded findings read as mentions", "negated": "annotated-absent findings",
                  "sex": "sex", "onset": "onset", "prior": "publication prior", "neighbours": "nearest training case",
                  "simulated": "simulated-patients network"}
        w.table(["part", "weight", "in use"],
                [[plain(labels.get(k, k)), num(v, 2), "yes" if v else "no"] for k, v in weights.items()],
                widths=[FRAME_WIDTH * 0.5, FRAME_WIDTH * 0.2, FRAME_WIDTH * 0.2])
        w.gap(4)
    if train:
        rows = [[plain(name), count(info.get("n_classes")), count(info.get("n_training_rows")),
                 plain(", ".join(f"{k} {count(v)}" for k, v in (info.get("training_rows_by_source") or {}).items())),
                 num(info.get("fit_seconds"), 1)] for name, info in train.items()]
        w.p("The models fitted by the train stage (the diagnostic model, and the likelihood core alone from the "
            "annotations as the baseline):")
        w.table(["model", "diseases", "training rows", "rows by source", "fit seconds"], rows,
                widths=[FRAME_WIDTH * f for f in (0.16, 0.14, 0.16, 0.38, 0.16)])
        w.gap(4)
    w.sources(CASE_METRICS, "stages/train.json",
              extra="Prose summarised from docs/model.md; the parameters are those recorded with the fitted model")


def data(w: Writer) -> None:
    simulate = w.inputs.json("stages/simulate.json")
    ingest = w.inputs.json("stages/ingest.json")
    validate = w.inputs.json("stages/validate.json")
    preprocess = w.inputs.json("stages/preprocess.json")
    w.h("2 Data")
    w.h("2.1 Simulated cohort and the pipeline's sources", 2)
    if simulate:
        w.p(f"The simulated cohort has {count(simulate.get('n_patients'))} patients with "
            f"{count(simulate.get('n_diseases'))} diseases, written as {count(simulate.get('n_files'))} daily files. "
            f"Each patient is simulated from the HPO annotations of their disease. The cohort is deliberately "
            f"imbalanced: up to {count(simulate.get('max_patients_per_disease'))} patients for one disease, and "
            f"{count(simulate.get('diseases_under_10_patients'))} diseases with fewer than 10. "
            f"{count(simulate.get('n_injected_bad_rows'))} bad rows are injected on purpose, for validation to catch.")
    else:
        w.missing("stages/simulate.json")
    sources = sorted(set((ingest or {}).get("sources", {})) | set((validate or {}).get("sources", {}))
                     | set((preprocess or {}).get("sources", {})))
    if sources:
        # one column per source: the sources are few, the facts about them many
        facts = [("rows read", "ingest", "n_rows"), ("parse issues", "ingest", "n_parse_issues"),
                 ("valid rows", "validate", "n_valid"), ("quarantined rows", "validate", "n_quarantined"),
                 ("training rows", "preprocess", "n_train"), ("test rows", "preprocess", "n_test"),
                 ("diseases", "preprocess", "n_diseases"), ("publications (groups)", "preprocess", "n_groups")]
        tables = {"ingest": ingest or {}, "validate": validate or {}, "preprocess": preprocess or {}}
        rows = [[label] + [count(tables[stage].get("sources", {}).get(name, {}).get(key)) for name in sources]
                for label, stage, key in facts]
        rows.insert(0, ["evaluated"] + [plain((preprocess or {}).get("sources", {}).get(name, {})
                                              .get("evaluation", "-")) for name in sources])
        w.table(["", *(plain(name) for name in sources)], rows,
                widths=[FRAME_WIDTH * 0.3] + [FRAME_WIDTH * 0.7 / len(sources)] * len(sources))
        w.p("Evaluated 'grouped': every row is scored by parts that never saw its group (publication); 'holdout': "
            "a held-out test split. A dash: not recorded for that source.", "source")
    for rel, value in (("stages/ingest.json", ingest), ("stages/validate.json", validate),
                       ("stages/preprocess.json", preprocess)):
        if value is None:
            w.missing(rel)
    w.sources("stages/simulate.json", "stages/ingest.json", "stages/validate.json", "stages/preprocess.json")

    w.h("2.2 Real case reports", 2)
    cases = w.inputs.json(CASE_METRICS)
    if cases:
        o = cases["overall"]
        groups = ((preprocess or {}).get("sources", {}).get("case_reports", {})).get("n_groups")
        w.p(f"{count(o.get('n'))} published case reports"
            + (f" from {count(groups)} publications" if _finite(groups) else "")
            + " (GA4GH phenopackets), each with the diagnosis its authors reported. They are used for training and, "
              "grouped by publication, for evaluation. Who they are:")
        demography = []
        for label, key in (("sex", "by_sex"), ("age band", "by_age_band"),
                           ("what is known of the disease", "by_knowledge")):
            for name, m in (cases.get(key) or {}).items():
                share = m.get("n") / o["n"] if _finite(m.get("n")) and o.get("n") else None
                demography.append([plain(label), plain(name), count(m.get("n")), pct(share)])
        w.table(["slice", "group", "cases", "share"], demography,
                widths=[FRAME_WIDTH * f for f in (0.3, 0.4, 0.15, 0.15)])
    else:
        w.missing(CASE_METRICS)
    w.sources(CASE_METRICS, "stages/preprocess.json")

    w.h("2.3 Knowledge", 2)
    knowledge = w.inputs.json("stages/knowledge.json")
    if knowledge:
        w.p(f"The HPO knowledge has {count(knowledge.get('n_terms'))} ontology terms (release "
            f"{plain(knowledge.get('ontology_release', '?'))}) and {count(knowledge.get('n_diseases'))} annotated "
            f"diseases with {count(knowledge.get('n_annotations'))} phenotype annotations "
            f"({count(knowledge.get('n_negated_annotations'))} of them negated). "
            f"{pct(knowledge.get('share_annotations_with_frequency'))} of annotations carry a frequency; the rest "
            f"get the default {num(knowledge.get('default_frequency'), 2)}. The releases it merges:")
        rows = [[plain(name), plain(r.get("source", "")), count(r.get("n_diseases")), count(r.get("n_annotations")),
                 count(r.get("n_annotations_kept")), count(r.get("n_diseases_only_here"))]
                for name, r in (knowledge.get("releases") or {}).items()]
        if rows:
            w.table(["release", "source", "diseases", "annotations", "annotations kept", "diseases only here"], rows,
                    first_share=0.16)
    else:
        w.missing("stages/knowledge.json")
    coverage = w.inputs.text("knowledge_coverage.md")
    if coverage:
        w.p("How well the knowledge covers the real case reports:")
        w.markdown(coverage, top_level=3)
    else:
        w.missing("knowledge_coverage.md")
    w.sources("stages/knowledge.json", "knowledge_coverage.md")


def results_real(w: Writer, strata: Mapping | None) -> None:
    cases = w.inputs.json(CASE_METRICS)
    lines = w.inputs.json("metrics.json")
    model = w.model
    baseline = next((name for name in (lines or {}) if name != model), None)
    w.h("3.1 Real patients: leave-publication-out", 2)
    if cases:
        o = cases["overall"]
        w.p(f"{count(o.get('n'))} real case reports, each scored by parts that never saw its publication. This "
            "line is the evidence for how the model works on patients.")
        rows = [[f"<b>{plain(model)}</b>", *slice_rows({"": o})[0][1:]]]
        base = ((lines or {}).get(baseline) or {}).get("case_reports", {}).get("overall") if baseline else None
        if base:
            rows.append([f"{plain(baseline)} (baseline: likelihood from the annotations alone)",
                         *slice_rows({"": base})[0][1:]])
        w.table(["model", *SLICE_COLUMNS], rows)
        w.p(f"Targets on the real case reports: {targets_met(o, '<b>not met</b>')}. Restricted to the {count(o.get('n_known'))} cases whose "
            f"disease the model can know (annotated, or reported by another publication): top-1 "
            f"{pct(o.get('known_top1'))}, top-10 {pct(o.get('known_top10'))}.")
        thresholds = dict(strata or {})
        mid, common = thresholds.get("mid_min"), thresholds.get("common_min")
        if mid is not None and common is not None:
            strata_text = (f"unseen: no training case of the disease from another publication; rare: 1 to {mid - 1}; "
                           f"mid: {mid} to {common - 1}; common: {common} or more")
        else:
            strata_text = "unseen: no training case of the disease from another publication; then rare, mid, common"
        for title, key, note in (
                ("By stratum of training cases", "by_stratum",
                 f"The strata count the training cases of the true disease from other publications ({strata_text})."),
                ("By sex", "by_sex", ""), ("By age band", "by_age_band", ""),
                ("By what the knowledge and the other publications know of the disease", "by_knowledge",
                 "A disease neither annotated nor reported by another publication cannot be ranked by any model.")):
            if cases.get(key):
                block = [Paragraph(title, w.style["h3"])]
                if note:
                    block.append(Paragraph(plain(note), w.style["body"]))
                label = {"by_stratum": "stratum", "by_sex": "sex", "by_age_band": "age band"}.get(key, "known")
                block.append(w.make_table([label, *SLICE_COLUMNS], slice_rows(cases[key])))
                w.story.append(KeepTogether(block))
        side = cases.get("side_by_side")
        if side:
            w.h("What each part adds", 3)
            w.p(f"The same fitted model on the same cases, with parts used alone or switched off. A part that is "
                f"switched off changes the weighted score before the reranker, and the reranker learned from every "
                f"part together, so those rows should be compared with '{plain(BEFORE_RERANK)}'.")
            rows = [[f"<b>the diagnostic model</b>", pct(o.get("top1")), pct(o.get("top3")), pct(o.get("top10")),
                     num(o.get("mrr"))]]
            rows += [[plain(name) + (f'<br/><font size="7" color="#555555">{plain(DESCRIPTIONS[name])}</font>'
                                     if name in DESCRIPTIONS else ""),
                      pct(m.get("top1")), pct(m.get("top3")), pct(m.get("top10")), num(m.get("mrr"))]
                     for name, m in side.items()]
            w.table(["variant", "top-1", "top-3", "top-10", "MRR"], rows, first_share=0.56)
    else:
        w.missing(CASE_METRICS)
        w.p("Without the real case reports there is no result on patients: only the simulated line below exists.")
    w.sources(CASE_METRICS, "metrics.json")



def results_simulated(w: Writer) -> None:
    lines = w.inputs.json("metrics.json")
    model = w.model
    w.h("3.2 Simulated test split (a second line, not evidence on patients)", 2)
    if lines:
        w.p("Patients simulated from the same HPO annotations the model uses, held out from training. These figures "
            "show that the pipeline runs end to end. They overstate accuracy on real patients and should not be "
            "read as clinical performance.")
        rows = []
        for name in [model, *(n for n in lines if n != model)]:
            line = (lines.get(name) or {}).get("hpo_cohort_test")
            if not line:
                continue
            rows.append([f"<b>{plain(name)}</b> overall", *slice_rows({"": line["overall"]})[0][1:]])
            rows += [[f"{plain(name)} {plain(stratum)}", *r[1:]]
                     for stratum, r in zip(line.get("by_stratum", {}), slice_rows(line.get("by_stratum")))]
        if rows:
            w.table(["model and stratum", *SLICE_COLUMNS], rows)
        else:
            w.p("reports/metrics.json has no simulated test line (hpo_cohort_test).", "missing")
    else:
        w.missing("metrics.json")
    w.sources("metrics.json")



def approval_section(w: Writer) -> None:
    approval = w.inputs.json("approval.json")
    w.h("3.3 Approval", 2)
    if approval:
        w.p(f"Decision: <b>{'approved' if approval.get('passed') else 'not approved'}</b>. Model "
            f"{plain(approval.get('model'))} is registered as version {plain(approval.get('version'))} of "
            f"<font face=\"Courier\">{plain(approval.get('registered_model'))}</font> under the alias "
            f"<font face=\"Courier\">{plain(approval.get('alias'))}</font>. It was validated on: "
            f"{plain(', '.join(approval.get('validated_on') or []) or 'nothing')}"
            + (f"; not measured: {plain(', '.join(approval['not_measured']))}" if approval.get("not_measured") else "")
            + ". The gates, and the comparison against the previous champion:")
        rows = []
        for check in approval.get("checks") or []:
            match = re.match(r"(.+?) = (\S+) (.+?): (\w+)$", str(check))
            if match:
                condition = re.sub(r"\d+\.\d{4,}", lambda f: num(float(f.group())), match.group(3))
                rows.append([plain(match.group(1)), num(float(match.group(2))), plain(condition),
                             plain(match.group(4))])
            else:
                rows.append([plain(check), "", "", ""])
        if rows:
            w.table(["gate", "value", "condition", "result"], rows,
                    widths=[FRAME_WIDTH * f for f in (0.34, 0.12, 0.42, 0.12)])
        if approval.get("reasons"):
            w.bullets(plain(r) for r in approval["reasons"])
    else:
        w.missing("approval.json")
    w.sources("approval.json")



def figures(w: Writer) -> None:
    w.h("3.4 Figures", 2)
    for rel, caption in FIGURES:
        w.figure(rel, caption)
    chart = reliability_chart(w.inputs)
    if chart is not None:
        w.keep_with_caption(Table([[chart]], hAlign="CENTER"), (
            "Reliability of the top probability: real case reports against the simulated test split, drawn from "
            + ", ".join(f'<font face="Courier" size="7.5">{plain(w.inputs.label(rel))}</font>'
                        for rel, _ in RELIABILITY_CSVS) + " (what <font face=\"Courier\">dvc plots</font> draws)."))
    else:
        w.p("Reliability tables not available: " + ", ".join(
            f"{plain(w.inputs.label(rel))} ({plain(w.inputs.status.get(w.inputs.label(rel), 'missing'))})"
            for rel, _ in RELIABILITY_CSVS) + "; chart skipped.", "missing")
    w.sources(*(rel for rel, _ in FIGURES), *(rel for rel, _ in RELIABILITY_CSVS))


def reliability_chart(inputs: Inputs) -> Drawing | None:
    series = []
    for rel, label in RELIABILITY_CSVS:
        rows = inputs.csv(rel)
        points = []
        for row in rows or []:
            try:
                points.append((float(row["mean_confidence"]), float(row["accuracy"])))
            except (KeyError, TypeError, ValueError):
                continue
        if points:
            series.append((label, sorted(points)))
    if not series:
        return None
    width, height = 11 * cm, 7.5 * cm
    drawing = Drawing(width, height)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 1.4 * cm, 1.1 * cm, width - 5.2 * cm, height - 1.6 * cm
    plot.data = [[(0.0, 0.0), (1.0, 1.0)]] + [points for _, points in series]
    palette = [colors.HexColor("#999999"), colors.HexColor("#1f4e9c"), colors.HexColor("#c0392b")]
    for i in range(len(plot.data)):
        plot.lines[i].strokeColor = palette[i % len(palette)]
        plot.lines[i].strokeWidth = 0.8 if i == 0 else 1.4
        if i == 0:
            plot.lines[i].strokeDashArray = [3, 2]
        else:
            plot.lines[i].symbol = makeMarker("FilledCircle", size=3)
            plot.lines[i].symbol.fillColor = palette[i % len(palette)]
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.valueMin, axis.valueMax, axis.valueStep = 0.0, 1.0, 0.2
        axis.labels.fontName, axis.labels.fontSize = "Helvetica", 7
        axis.labelTextFormat = "%.1f"
    drawing.add(plot)
    drawing.add(String(plot.x + plot.width / 2, 0.2 * cm, "mean top probability (bin)", fontName="Helvetica",
                       fontSize=7.5, textAnchor="middle"))
    drawing.add(String(0.3 * cm, plot.y + plot.height + 0.15 * cm, "accuracy", fontName="Helvetica", fontSize=7.5))
    legend = Legend()
    legend.x, legend.y = plot.x + plot.width + 0.4 * cm, plot.y + plot.height - 0.2 * cm
    legend.fontName, legend.fontSize = "Helvetica", 7.5
    legend.alignment = "right"
    legend.colorNamePairs = [(palette[0], "perfect calibration")] + [
        (palette[i + 1], label) for i, (label, _) in enumerate(series)]
    drawing.add(legend)
    return drawing


def anomaly(w: Writer) -> None:
    summary_ = w.inputs.json("stages/anomaly.json")
    detectors = w.inputs.json("anomaly/metrics.json")
    w.h("3.5 Anomaly detection", 2)
    if summary_:
        real = (summary_.get("real_cases") or {}).get("case_reports") or {}
        w.p(f"Before a patient is scored, a detector flags records that look implausible. On the simulated test "
            f"split, {count(summary_.get('n_injected'))} anomalies were injected among "
            f"{count(summary_.get('n_test'))} patients. The detector in use "
            f"(<font face=\"Courier\">{plain(summary_.get('detector'))}</font>) reaches ROC AUC "
            f"{num(summary_.get('roc_auc'))}, precision {num(summary_.get('precision'))} and recall "
            f"{num(summary_.get('recall'))}"
            + (f". On the {count(real.get('n_cases'))} real case reports it flags {pct(real.get('flag_rate'))}, "
               f"against a configured rate of {pct(real.get('configured_rate'))}; a detector fitted on simulated "
               f"patients alone would flag "
               f"{pct(real.get('flag_rate_of_a_detector_fitted_on_simulated_patients_alone'))}"
               if real else "") + ".")
    else:
        w.missing("stages/anomaly.json")
    if detectors:
        chosen = (summary_ or {}).get("detector")
        rows = [[(f"<b>{plain(name)}</b> (in use)" if name == chosen else plain(name)), num(m.get("roc_auc")),
                 num(m.get("pr_auc")), num(m.get("precision")), num(m.get("recall")), num(m.get("f1")),
                 pct(m.get("flagged_share"))]
                for name, m in detectors.items() if isinstance(m, Mapping) and "roc_auc" in m]
        if rows:
            w.table(["detector", "ROC AUC", "PR AUC", "precision", "recall", "F1", "flagged"], rows, first_share=0.22)
            w.gap(4)
    else:
        w.missing("anomaly/metrics.json")
    w.figure(*ANOMALY_FIGURE, max_height=7 * cm)
    w.sources("stages/anomaly.json", "anomaly/metrics.json", ANOMALY_FIGURE[0],
              extra="The anomalies are injected into simulated patients: these are checks of the detector, "
                    "not a measure of real data quality")


def text_section(w: Writer) -> None:
    metrics = w.inputs.json("text/metrics.json")
    w.h("3.6 Clinical notes: free text to HPO findings", 2)
    if metrics:
        protocol = metrics.get("protocol") or {}
        ablation = metrics.get("ablation") or {}
        final_name, final = (list(ablation.items())[-1] if ablation else (None, {}))
        corpora = metrics.get("corpora") or {}
        anchors = metrics.get("anchors") or {}
        w.p("Notes are read into findings (present or excluded) before scoring. The reader is scored at document "
            "level by the shared scorer on annotated corpora"
            + (f", cross-validated in {count(protocol.get('folds'))} folds" if _finite(protocol.get("folds")) else "")
            + (f"; final configuration '{plain(final_name)}'" if final_name else "") + ".")
        rows = []
        for corpus, info in corpora.items():
            m = (final or {}).get(corpus) or {}
            rows.append([plain(corpus), plain(info.get("status", "")), count(info.get("documents")),
                         num(m.get("precision")), num(m.get("recall")), num(m.get("f1")),
                         plain("; ".join(f"{k} {v}" for k, v in (anchors.get(corpus) or {}).items()))])
        if rows:
            w.table(["corpus", "status", "documents", "precision", "recall", "F1", "anchors (same scorer)"], rows,
                    widths=[FRAME_WIDTH * f for f in (0.13, 0.08, 0.11, 0.11, 0.09, 0.08, 0.40)])
        summary_ = (metrics.get("end_to_end") or {}).get("summary") or {}
        if summary_:
            n_docs = len((metrics.get("end_to_end") or {}).get("documents") or [])
            w.p(f"From note to diagnosis ({count(n_docs)} documents with a known disease): the model's ranking from "
                "the annotated (gold) findings against the findings read from the text.")
            w.table(["findings", "top-1", "top-10", "median rank", "MRR"],
                    [[plain(k), pct(v.get("top1")), pct(v.get("top10")), num(v.get("median_rank"), 1),
                      num(v.get("mrr"))] for k, v in summary_.items()], first_share=0.3)
    else:
        w.missing("text/metrics.json")
    w.sources("text/metrics.json")


def limitations(w: Writer) -> None:
    cases = w.inputs.json(CASE_METRICS)
    lines = w.inputs.json("metrics.json")
    train = w.inputs.json("stages/train.json") or {}
    production_md = w.inputs.text("bench/production.md")
    production = w.inputs.json("bench/production.json")
    model = w.model
    w.h("4 Limitations")
    items = []
    by_source = (train.get(model) or {}).get("training_rows_by_source") or {}
    total = sum(v for v in by_source.values() if _finite(v))
    simulated_rows = by_source.get("hpo_cohort")
    simulated = ((lines or {}).get(model) or {}).get("hpo_cohort_test", {}).get("overall") or {}
    real = (cases or {}).get("overall") or {}
    without_mentions = ((cases or {}).get("side_by_side") or {}).get("without excluded-finding mentions")
    text = ("<b>Simulated training data.</b> Part of the training data is simulated from the same HPO annotations "
            "the likelihood core reads"
            + (f" ({count(simulated_rows)} of {count(total)} training rows, {pct(simulated_rows / total)})"
               if _finite(simulated_rows) and total else "")
            + ". Simulated patients are cleaner than real ones and share the knowledge's own biases. On the "
              "simulated test split")
    if simulated and real:
        text += (f" top-1 is {pct(simulated.get('top1'))} against {pct(real.get('top1'))} on real case reports, and "
                 f"ECE is {num(simulated.get('ece'))} against {num(real.get('ece'))}")
    text += ". The simulated line measures the pipeline, not the model's clinical accuracy."
    items.append(text)
    items.append("<b>Selected cases.</b> The real patients are published case reports: curated, usually genetically "
                 "solved, and chosen by their authors because they were worth publishing. Findings recorded in a "
                 "clinic are sparser and noisier. Excluded findings are listed in case reports because they matter "
                 "for the disease under discussion, and the model rewards that habit (the 'mentions' part"
                 + (f": without it, top-1 falls to {pct(without_mentions.get('top1'))}" if without_mentions else "")
                 + "). In a clinic, a clinician's own suspicion could be echoed back the same way. No prospective "
                   "or clinic-based validation has been done.")
    knowledge = (cases or {}).get("by_knowledge") or {}
    neither = next((m for name, m in knowledge.items() if name.startswith("neither")), None)
    strata = (cases or {}).get("by_stratum") or {}
    text = ("<b>Publication bias.</b> Diseases that are published often dominate both training and evaluation, and "
            "accuracy depends strongly on how many other publications report the same disease")
    if strata:
        text += " (" + ", ".join(f"{plain(k)}: top-1 {pct(m.get('top1'))} on {count(m.get('n'))} cases"
                                 for k, m in strata.items()) + ")"
    text += ". "
    if neither and real.get("n"):
        text += (f"{count(neither.get('n'))} cases ({pct(neither['n'] / real['n'])}) have a disease that is neither "
                 "annotated nor reported by another publication; no model built on this knowledge can rank them. ")
    text += "Diseases never published as case reports are not represented at all."
    items.append(text)
    items.append("<b>Evaluation grouped by publication.</b> Every real case is scored by parts that never saw its "
                 "publication. This prevents leakage between cases of the same paper, but all publications come "
                 "from one curated collection, and the parameters marked 'grid' in the configuration were chosen "
                 "on these shared cases (the model card says so). The figures are therefore cross-validated "
                 "estimates on this collection, not an independent external validation. Cases of the same disease "
                 "from other publications do stay in training; that is intended, because it is how the model "
                 "learns rare diseases, but it also means the figures depend on how often a disease is published.")
    if cases is None:
        items.append(f"<b>No real-patient evaluation in this build.</b> {plain(w.inputs.label(CASE_METRICS))} is "
                     f"{plain(w.inputs.status.get(w.inputs.label(CASE_METRICS), 'missing'))}: every figure in this "
                     "document comes from simulated patients.")
    if cases:
        fails = [f"{k} {pct(real.get(k)) if k != 'ece' else num(real.get(k))}" for k in ("top1", "top10")
                 if _finite(real.get(k)) and real[k] < TARGETS[k]]
        if _finite(real.get("ece")) and real["ece"] > TARGETS["ece"]:
            fails.append(f"ece {num(real['ece'])}")
        if fails:
            items.append("<b>Accuracy targets missed on real case reports:</b> " + plain(", ".join(fails)) + ".")
    # production targets: the benchmark states them; its JSON has what was measured
    if production_md:
        targets = [line.strip() for line in production_md.splitlines() if line.strip().lower().startswith("target")]
        for target in targets:
            match = re.search(r"([\d,]+) patients in under ([\d.]+) s", target)
            batch = (production or {}).get("batch") or []
            if match and batch:
                patients, limit = int(match.group(1).replace(",", "")), float(match.group(2))
                runs = [b for b in batch if b.get("n_rows") == patients and _finite(b.get("seconds"))]
                if runs:
                    best = min(runs, key=lambda b: b["seconds"])
                    verdict = "met" if best["seconds"] < limit else "missed"
                    items.append(f"<b>Production target {verdict}.</b> {inline_markdown(target)} Fastest "
                                 f"measured: {num(best['seconds'], 1)} s ({plain(best.get('label', ''))}, "
                                 f"{count(best.get('patients_per_second'))} patients/s)"
                                 + (f" on {plain(production.get('machine'))}" if production.get("machine") else "")
                                 + ".")
                    continue
            items.append(f"<b>Production target (not checked against a measurement).</b> {inline_markdown(target)}")
    w.bullets(items)
    w.sources(CASE_METRICS, "metrics.json", "stages/train.json", "bench/production.md", "bench/production.json")


def model_card_section(w: Writer) -> None:
    card = w.inputs.text(MODEL_CARD)
    w.h("5 Model card")
    if card:
        body = re.sub(r"^# .*\n", "", card, count=1)  # the section's own heading replaces the card's title
        body = re.sub(r"^Generated with .*\n", "", body, flags=re.M)
        w.markdown(body, top_level=2)
    else:
        w.missing(MODEL_CARD)
    w.sources(MODEL_CARD)


def provenance(w: Writer) -> None:
    w.h("Appendix: inputs")
    w.p("Every file this document read, with its SHA-256 (first 16 hex digits). A file that is missing or "
        "unreadable left a note in the section that needed it.")
    rows = []
    for label, status in sorted(w.inputs.status.items()):
        path = w.inputs.files.get(label)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path is not None else "-"
        rows.append([f'<font face="Courier">{plain(label)}</font>', plain(status), digest])
    w.table(["file", "status", "sha256"], rows, widths=[FRAME_WIDTH * f for f in (0.64, 0.14, 0.22)])


# ---------------------------------------------------------------------------------------------- the document

def build_manuscript(reports_dir: str | Path, out_path: str | Path, bench_dir: str | Path | None = None,
                     strata: Mapping | None = None, calibration_bins: int | None = None,
                     model_name: str | None = None, page_compression: bool = True) -> dict:
    """Write the PDF; return its path, page count and the status of every input (read / missing / unreadable)."""
    inputs = Inputs(Path(reports_dir), Path(bench_dir) if bench_dir else None)
    w = Writer(inputs)
    lines = inputs.json("metrics.json") or {}
    # the model the document is about: the approved one, else the configured one, else the one the evaluate stage
    # scored side by side (only the served model gets that), else whichever metrics.json names
    side_by_side = [name for name, by_line in lines.items() if isinstance(by_line, dict) and any(
        isinstance(line, dict) and "side_by_side" in line for line in by_line.values())]
    w.model = ((inputs.json("approval.json") or {}).get("model") or model_name
               or ((inputs.json(CASE_METRICS) or {}).get("context") or {}).get("model")
               or next(iter(side_by_side), None) or next(iter(lines), "model"))
    sections = [("Summary", summary), ("1 Methods", lambda w: methods(w, calibration_bins)), ("2 Data", data),
                ("", lambda w: (w.story.append(PageBreak()), w.h("3 Results"))),
                ("3.1 Real patients", lambda w: results_real(w, strata)), ("3.2 Simulated test split",
                                                                          results_simulated),
                ("3.3 Approval", approval_section), ("3.4 Figures", figures), ("3.5 Anomaly detection", anomaly),
                ("3.6 Clinical notes", text_section), ("", lambda w: w.story.append(PageBreak())),
                ("4 Limitations", limitations), ("5 Model card", model_card_section),
                ("Appendix: inputs", provenance)]
    failed = []
    for title, section in sections:
        mark = len(w.story)
        try:
            section(w)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as error:
            # an input of an unexpected shape spoils its own section, said in the PDF, not the whole document
            log.warning("manuscript: section %r not built: %s: %s", title, type(error).__name__, error)
            del w.story[mark:]
            w.h(plain(title), 2 if re.match(r"\d\.\d", title) else 1)
            w.p(f"<b>This section could not be built</b> from its files ({plain(type(error).__name__)}: "
                f"{plain(error)}); the files it read are listed in the appendix.", "missing")
            failed.append(title)
    story = title_block(w) + w.story

    approval = inputs.json("approval.json") or {}
    footer = (f"dxlab evaluation report - model {w.model}"
              + (f" version {approval['version']}" if approval.get("version") is not None else ""))

    def on_page(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(MARGIN, 1.1 * cm, drawable(footer))
        canvas.drawRightString(PAGE_WIDTH - MARGIN, 1.1 * cm, f"page {doc.page}")
        canvas.restoreState()

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(str(out_path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN, title="dxlab evaluation report", author="dxlab",
                            subject=footer, creator="dxlab.evaluation.manuscript", invariant=1,
                            pageCompression=1 if page_compression else 0)
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return {"path": out_path, "pages": doc.page, "inputs": dict(inputs.status), "sections_failed": failed}
