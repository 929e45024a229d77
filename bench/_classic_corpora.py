"""CISI and Cranfield, the classic judged collections, converted to BEIR layout.

Neither collection is in the repository, and neither can be fetched at run time here. Put the
original files, as the University of Glasgow's IR group publishes them
(http://ir.dcs.gla.ac.uk/resources/test_collections/), in one folder:

    <folder>/cisi/CISI.ALL  CISI.QRY  CISI.REL
    <folder>/cranfield/cran.all.1400  cran.qry  cranqrel

and name it with ``RAGKIT_CLASSIC_CORPORA`` (default: ``data`` beside the checkout). The
converted folders are written under ``bench/results/corpora``.

The conversion, fixed before any measurement:

- Documents: ``.T`` is the title, ``.W`` the body; authors, sources and CISI's
  cross-references (``.A``, ``.B``, ``.X``) are left out. A Cranfield body starts with its
  title again; that repeat is cut, so the joined text (title, then body) is the original
  ``.W``. The two empty Cranfield documents (471 and 995) are left out.
- Queries: the ``.W`` text. Cranfield's qrels number the queries 1-225 in file order, not by
  their ``.I`` (which skips numbers); the ordinal is the id. CISI's ids are its ``.I``.
- Judgements: every CISI pair is relevant (gain 1). Cranfield's codes 1-4 (1: a complete
  answer ... 4: of minimum interest) become gains 4-1; code -1 (no interest) is left out,
  as unjudged documents are.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "data"
_FIELD = re.compile(r"^\.([A-Z])(?:\s+(\S+))?\s*$")
_WS = re.compile(r"\s+")
FILES = {
    "cisi": ("CISI.ALL", "CISI.QRY", "CISI.REL"),
    "cranfield": ("cran.all.1400", "cran.qry", "cranqrel"),
}


def source_folder() -> Path:
    return Path(os.environ.get("RAGKIT_CLASSIC_CORPORA", DEFAULT))


def _records(path: Path) -> list[tuple[str, dict[str, str]]]:
    """The ``.I`` records of a SMART-format file: (id, {field letter: text})."""
    records: list[tuple[str, dict[str, list[str]]]] = []
    field = ""
    for raw in path.read_text(encoding="latin-1").splitlines():
        marker = _FIELD.match(raw.rstrip())
        if marker and marker.group(1) == "I" and marker.group(2):
            records.append((marker.group(2), {}))
            field = ""
        elif marker and not marker.group(2):
            field = marker.group(1)
            records[-1][1].setdefault(field, [])
        elif field:
            records[-1][1][field].append(raw)
    return [
        (rid, {k: _WS.sub(" ", " ".join(v)).strip() for k, v in fields.items()})
        for rid, fields in records
    ]


def _body(title: str, text: str) -> str:
    """Cranfield repeats the title at the start of the body: cut the repeat."""
    if title and text.startswith(title):
        return text[len(title) :].strip()
    return text


def _qrels(name: str, path: Path) -> dict[tuple[str, str], int]:
    """(query id, document id) -> gain, the pairs of gain 0 left out (unjudged is the same)."""
    out: dict[tuple[str, str], int] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        code = int(parts[2])
        gain = 1 if name == "cisi" else (5 - code if 1 <= code <= 4 else 0)
        if gain:
            out[(parts[0], parts[1])] = gain
    return out


def build(name: str, root: Path) -> Path:
    """The BEIR folder of ``name`` ("cisi" or "cranfield") under ``root``, converted once."""
    folder = root / name
    if (folder / "qrels" / "test.tsv").exists():
        return folder
    source = source_folder() / name
    missing = [f for f in FILES[name] if not (source / f).exists()]
    if missing:
        raise SystemExit(
            f"{name}: {', '.join(missing)} not found in {source}; put the original files there "
            "or set RAGKIT_CLASSIC_CORPORA (see bench/_classic_corpora.py)"
        )
    docs_file, queries_file, qrels_file = (source / f for f in FILES[name])
    queries = _records(queries_file)
    # CISI's qrels use the .I ids; Cranfield's number the queries in file order.
    qids = [rid if name == "cisi" else str(n + 1) for n, (rid, _) in enumerate(queries)]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as out:
        for rid, fields in _records(docs_file):
            title = fields.get("T", "")
            body = _body(title, fields.get("W", ""))
            if not (title or body):
                continue  # (Cranfield's 471 and 995 are empty)
            out.write(json.dumps({"_id": rid, "title": title, "text": body}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for qid, (_, fields) in zip(qids, queries):
            out.write(json.dumps({"_id": qid, "text": fields.get("W", "")}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for (qid, doc), gain in _qrels(name, qrels_file).items():
            out.write(f"{qid}\t{doc}\t{gain}\n")
    return folder
