"""`dxlab annotate --input FILE.jsonl --out FILE.jsonl`: notes in, findings with spans and assertions out.

Input lines: {"doc_id", "text", ...}. Output lines keep the input's doc_id and add "findings", "excluded",
"uncertain", "family" and "mentions" ([{"start", "end", "text", "hpo_id", "assertion", ...}]). A line that is not
JSON, has no text, or whose text cannot be read is reported on stderr by line number and skipped; the run goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dxlab.text.annotate import Annotator, TextError, patient_fields


def build_annotator(cfg=None, knowledge_dir: str | None = None, model: str | None = None,
                    corpora: list[str] | None = None) -> Annotator:
    """The annotator the text config describes (conf/text/default.yaml unless `cfg` is given): a saved one
    (`model`), else fitted on the knowledge tables, with learned parts when the annotated corpora it lists (or
    `corpora`) are readable. Relative paths are taken from the project root."""
    if model:
        return Annotator.load(model)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from dxlab.config import project_root

    root = project_root()
    if cfg is None:
        cfg = OmegaConf.load(root / "conf" / "text" / "default.yaml")
    params = OmegaConf.to_container(cfg.annotator, resolve=True)
    params["knowledge_dir"] = str(_resolve(root, knowledge_dir or params["knowledge_dir"]))
    annotator: Annotator = instantiate(params)
    documents = []
    for path in corpora if corpora is not None else list(cfg.get("learn_from", []) or []):
        path = _resolve(root, path)
        if path.exists():
            from dxlab.text.evaluate import read_corpus

            documents.extend(read_corpus(path))
        else:
            print(f"annotate: {path} not found: its learned parts are skipped", file=sys.stderr)
    return annotator.fit(documents=documents or None)


def _resolve(root: Path, path) -> Path:
    path = Path(str(path))
    return path if path.is_absolute() else root / path


def annotate_lines(annotator: Annotator, lines, out, errors=None) -> tuple[int, int]:
    """Annotate JSONL lines into `out`; returns (written, skipped). Bad lines are named on `errors`, never fatal."""
    errors = errors or sys.stderr
    written = skipped = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            if "text" not in record:
                raise ValueError('no "text" field')
            mentions = annotator.annotate(record["text"])
        except (ValueError, TextError) as err:  # json.JSONDecodeError is a ValueError
            print(f"line {number}: skipped: {err}", file=errors)
            skipped += 1
            continue
        fields = patient_fields(mentions)
        fields.pop("family_history")
        result = {"doc_id": record.get("doc_id", number), **fields, "mentions": [m.as_dict() for m in mentions]}
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        written += 1
    return written, skipped


def cmd_annotate(args: argparse.Namespace) -> int:
    """Free text -> HPO findings with spans and assertions (JSONL in, JSONL out)."""
    corpora = [] if args.no_learned else None
    annotator = build_annotator(knowledge_dir=args.knowledge, model=args.model, corpora=corpora)
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", errors="replace")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with source, open(args.out, "w", encoding="utf-8") as out:
        written, skipped = annotate_lines(annotator, source, out)
    print(f"annotated {written} documents into {args.out}" + (f"; skipped {skipped} bad lines" if skipped else ""),
          file=sys.stderr)
    return 0 if written or not skipped else 1


def add_command(sub) -> None:
    p = sub.add_parser("annotate", help=cmd_annotate.__doc__, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help='JSONL, one {"doc_id", "text"} a line ("-" for stdin)')
    p.add_argument("--out", required=True, help="JSONL with findings, excluded, uncertain, family and mentions")
    p.add_argument("--knowledge", default=None, help="knowledge tables (default: the text config's knowledge_dir)")
    p.add_argument("--model", default=None, help="a fitted annotator saved with Annotator.save (skips fitting)")
    p.add_argument("--no-learned", action="store_true", help="dictionary and ConText only (no learned parts)")
    p.set_defaults(func=cmd_annotate)
