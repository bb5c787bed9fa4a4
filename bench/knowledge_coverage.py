"""Coverage of the shared case reports by each knowledge source alone and merged (issue 15).

Builds the knowledge of `conf/knowledge/merged.yaml` (every release it lists, merged by the rule in
`dxlab.knowledge.sources`) and counts, for each release alone and for the merge, the shared case reports whose
disease is annotated, not annotated but seen in another publication's cases, or neither. The case file is read
where it lies (../shared/data, never copied). Writes reports/knowledge_coverage.json and .md.

    make knowledge-coverage        # or: .venv/bin/python bench/knowledge_coverage.py [--knowledge merged]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dxlab.config import compose
from dxlab.knowledge.base import build_knowledge_report
from dxlab.knowledge.coverage import MERGED, case_coverage, coverage_markdown

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knowledge", default="merged", help="option of conf/knowledge listing the releases")
    parser.add_argument("--cases", default=None, help="case file (default: external.cases of the config)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "knowledge_coverage"))
    args = parser.parse_args()
    cfg = compose([f"knowledge={args.knowledge}"], config_dir=ROOT / "conf")
    cases_path = ROOT / (args.cases or cfg.external.cases)
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
    out.with_suffix(".md").write_text(md)
    record = {"cases": str(Path(args.cases or cfg.external.cases)), "n_cases": len(cases),
              "n_publications": int(cases["pmid"].nunique()), "releases": merge["releases"],
              "ontology_release": merge["ontology_release"], "coverage": table.to_dict(orient="records")}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
