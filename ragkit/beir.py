"""Reading BEIR-layout datasets (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ragkit.errors import InvalidInputError


@dataclass(slots=True)
class BeirDoc:
    id: str
    title: str
    text: str

    @property
    def content(self) -> str:
        """Title and body, as BEIR baselines index them."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def corpus_path(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).exists():
            return folder / name
    raise InvalidInputError(f"{folder} has no corpus.jsonl or corpus.jsonl.gz (BEIR layout)")


def is_beir_folder(folder: Path) -> bool:
    return folder.is_dir() and any(
        (folder / name).exists() for name in ("corpus.jsonl", "corpus.jsonl.gz")
    )


def read_corpus(folder: Path) -> Iterator[BeirDoc]:
    with _open_text(corpus_path(folder)) as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                yield BeirDoc(str(row["_id"]), row.get("title") or "", row.get("text") or "")


def read_queries(folder: Path) -> dict[str, str]:
    path = folder / "queries.jsonl"
    if not path.exists():
        raise InvalidInputError(f"{folder} has no queries.jsonl (BEIR layout)")
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                out[str(row["_id"])] = row["text"]
    return out


def read_qrels(folder: Path, split: str = "test") -> dict[str, dict[str, int]]:
    path = folder / "qrels" / f"{split}.tsv"
    if not path.exists():
        raise InvalidInputError(f"{folder} has no qrels/{split}.tsv (BEIR layout)")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


#: where the BEIR benchmark publishes its datasets (one ``<name>.zip`` each)
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
#: BEIR datasets with a public zip (the ones that need a licence agreement are not listed)
BEIR_DATASETS = (
    "scifact",
    "nfcorpus",
    "arguana",
    "scidocs",
    "fiqa",
    "trec-covid",
    "webis-touche2020",
    "quora",
    "nq",
    "hotpotqa",
    "dbpedia-entity",
    "fever",
    "climate-fever",
    "msmarco",
)


def default_cache() -> Path:
    """``$RAGKIT_CACHE`` or ``~/.cache/ragkit``."""
    import os

    return Path(os.environ.get("RAGKIT_CACHE") or Path.home() / ".cache" / "ragkit")


def fetch_dataset(
    name: str,
    *,
    cache: Path | None = None,
    base_url: str = BEIR_URL,
    timeout_s: float = 60.0,
) -> Path:
    """The folder of BEIR dataset ``name``, downloaded once from ``base_url`` into
    ``cache/beir/<name>`` (a folder already there is used as it is). Needs the network the
    first time; offline, a clear ``InvalidInputError`` says what to do instead."""
    import shutil
    import urllib.error
    import urllib.request
    import zipfile

    from ragkit.errors import RagkitError

    if name not in BEIR_DATASETS:
        raise InvalidInputError(
            f"unknown BEIR dataset {name!r}; known: {', '.join(BEIR_DATASETS)} "
            "(or download one yourself and pass its folder with --data)"
        )
    root = (cache or default_cache()) / "beir"
    folder = root / name
    if is_beir_folder(folder):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    archive = root / f"{name}.zip.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer, archive.open("wb") as out:
            shutil.copyfileobj(answer, out)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        archive.unlink(missing_ok=True)
        raise RagkitError(
            f"cannot download {url} ({getattr(exc, 'reason', exc)}): are you offline? Download "
            f"and unzip it on a machine with network access, then pass the folder with --data"
        ) from None
    staging = root / f"{name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
    except zipfile.BadZipFile:
        raise RagkitError(f"{url} did not return a zip archive") from None
    finally:
        archive.unlink(missing_ok=True)
    inner = staging / name if (staging / name).is_dir() else staging
    if not is_beir_folder(inner):
        shutil.rmtree(staging, ignore_errors=True)
        raise RagkitError(f"{url} does not hold a BEIR folder (corpus.jsonl, queries.jsonl)")
    inner.rename(folder)
    shutil.rmtree(staging, ignore_errors=True)
    return folder
