"""The scan behind ``ragkit.highlight``: the candidate tokens of many texts in one pass.

A search's hits hold some 15,000 characters; tokenizing them in Python costs more than the
search. The texts are joined (code 0 between them) and scanned by one compiled function
that tokenizes as the analyzer does (runs of ``str.isalnum`` characters), lowercases, and
keeps the tokens starting with a query term's prefix (``ragkit.highlight``), writing them,
lowercased, for the analyzer to check in one batch.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import numba
import numpy as np
from numpy.typing import NDArray

#: the one character whose lowercase is two characters ("İ" -> "i̇"): a text holding it is
#: highlighted the slow way, where offsets are kept apart from lowercasing
_LONGER_LOWER = 0x130
_PLANES = 0x110000
_TABLE = 4096  # slots of the distinct-forms table (a power of two)
_SURROGATES = range(0xD800, 0xE000)
#: ``tables()``'s flags: a token character, "İ", the NUL between texts
WORD, LONGER, NUL = 1, 2, 4


@lru_cache(maxsize=1)
def tables() -> tuple[NDArray[np.uint8], NDArray[np.uint32]]:
    """Per code point: its flags (``WORD``: a token character, ``[^\\W_]``; ``LONGER``: "İ";
    ``NUL``), and its lowercase."""
    points = [c for c in range(_PLANES) if c not in _SURROGATES and c != _LONGER_LOWER]
    chars = "".join(map(chr, points))
    index = np.asarray(points, dtype=np.int64)
    word = np.zeros(_PLANES, dtype=np.uint8)
    marked = re.sub(r"[^\W_]", "\x01", re.sub(r"[\W_]", "\x00", chars))
    word[index] = np.frombuffer(marked.encode("utf-32-le"), dtype=np.uint32) == 1
    word[_LONGER_LOWER] = WORD | LONGER
    word[0] = NUL
    lower = np.arange(_PLANES, dtype=np.uint32)
    lower[index] = np.frombuffer(chars.lower().encode("utf-32-le"), dtype=np.uint32)
    return word, lower


@numba.njit(cache=True, nogil=True, inline="always")
def _lower(lower: NDArray[np.uint32], c: int) -> int:
    if c < 128:
        return c + 32 if 65 <= c <= 90 else c
    return int(lower[c])


@numba.njit(cache=True, nogil=True)
def candidate_tokens(
    codes: NDArray[np.uint32],
    word: NDArray[np.uint8],
    lower: NDArray[np.uint32],
    prefixes: NDArray[np.uint32],
    lengths: NDArray[np.int64],
    guide: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]],
    bounds: NDArray[np.int32],
    found: NDArray[np.int32],
    chars: NDArray[np.uint32],
    sizes: NDArray[np.int64],
) -> tuple[int, int, int, bool, int]:
    """The tokens of ``codes`` (texts of ``sizes`` characters joined by code 0) whose
    lowercase starts with one of ``prefixes`` (sorted): for each, in ``found``'s rows, the
    number of its text, its start and end there, and the number of its lowercase among the
    distinct ones, which go to ``chars`` once each, each followed by a 0 (a search's hits
    repeat their terms: the analyzer then checks each form once). Returns the tokens, the
    distinct forms, the characters written, whether ``codes`` holds "İ" (whose
    lowercase is two characters: then the caller finds the texts holding it and scans
    them apart) and how many NULs it holds (one between each two texts, or a text holds
    one). ``word`` and ``lower``: ``tables()``. ``guide``: ``guide()`` of the prefixes.
    ``bounds`` is scratch space (``len(codes) + 1``)."""
    low, high, pairs = guide
    n = len(codes)
    texts = _begins(sizes)
    # Distinct forms by hash (FNV-1a over the lowercase), compared in full on a match; past
    # half the table, forms are written again rather than looked up (still exact).
    table = np.full(_TABLE, -1, dtype=np.int32)
    form_at, form_size = found[4], found[5]  # (where each distinct form is in ``chars``)
    forms = 0
    ascii_lower = lower[:128]  # (a small table stays in the first-level cache)
    # Pass 1, without branches on the text (real text mispredicts them): token edges.
    b = nuls = previous = marks = 0
    for i in range(n):
        flags = int(word[codes[i]])
        inside = flags & WORD
        bounds[b] = i
        b += inside ^ previous
        previous = inside
        marks |= flags
        nuls += flags >> 2
    bounds[b] = n
    b += previous  # (a token running to the end)
    # Pass 2: the tokens starting with a prefix.
    m = w = text = 0
    for k in range(0, b - 1, 2):
        start, end = bounds[k], bounds[k + 1]
        c = codes[start]
        if c < 128 and end - start > 1:
            d = codes[start + 1]
            if d < 128 and not pairs[c * 128 + d]:
                continue
        c = ascii_lower[c] if c < 128 else lower[c]
        while text + 1 < len(texts) and texts[text + 1] <= start:
            text += 1
        base = texts[text]
        first, last = (low[c], high[c]) if c < 128 else (0, len(lengths))
        for p in range(first, last):
            length = lengths[p]
            if end - start < length:
                continue
            same = True
            for q in range(length):
                if _lower(lower, codes[start + q]) != prefixes[p, q]:
                    same = False
                    break
            if same:
                found[0, m] = text
                found[1, m] = start - base
                found[2, m] = end - base
                size = end - start
                h = np.uint64(14695981039346656037)
                for i in range(start, end):
                    h = (h ^ np.uint64(_lower(lower, codes[i]))) * np.uint64(1099511628211)
                slot = np.int64(h & np.uint64(_TABLE - 1))
                form = -1
                while forms < _TABLE // 2:
                    seen = table[slot]
                    if seen < 0:
                        break
                    if form_size[seen] == size:
                        equal = True
                        for q in range(size):
                            if chars[form_at[seen] + q] != _lower(lower, codes[start + q]):
                                equal = False
                                break
                        if equal:
                            form = seen
                            break
                    slot = (slot + 1) & (_TABLE - 1)
                if form < 0:
                    form = forms
                    forms += 1
                    if forms <= _TABLE // 2:
                        table[slot] = form
                    form_at[form], form_size[form] = w, size
                    for i in range(start, end):
                        chars[w] = _lower(lower, codes[i])
                        w += 1
                    chars[w] = 0
                    w += 1
                found[3, m] = form
                m += 1
                break
    return m, forms, w, marks & LONGER != 0, nuls


def guide(
    prefixes: NDArray[np.uint32], lengths: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """For ``candidate_tokens``: the prefixes (sorted) starting with each ASCII character
    (``low[c]`` to ``high[c]``), and the pairs of ASCII characters, in either case, that
    begin one (all pairs after a one-letter prefix's letter), so most tokens are passed
    over after one look-up."""
    low = np.zeros(128, dtype=np.int64)
    high = np.zeros(128, dtype=np.int64)
    pairs = np.zeros((128, 128), dtype=np.bool_)
    for p in range(len(lengths) - 1, -1, -1):
        a = int(prefixes[p, 0])
        if a < 128:
            low[a] = p
            high[a] = max(high[a], p + 1)
            firsts = _cases(a)
            if lengths[p] == 1:
                pairs[firsts, :] = True
            elif prefixes[p, 1] < 128:
                pairs[np.ix_(firsts, _cases(int(prefixes[p, 1])))] = True
    return low, high, pairs.ravel()


def _cases(c: int) -> list[int]:
    """The ASCII characters whose lowercase is ``c``."""
    return [c, c - 32] if 97 <= c <= 122 else [c]


_local = threading.local()


def scratch(n: int) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.uint32]]:
    """This thread's buffers for ``candidate_tokens`` over ``n`` code points (kept: fresh
    ones cost page faults on every search)."""
    held = getattr(_local, "buffers", None)
    if held is None or len(held[0]) < n + 1:
        size = max(n + 1, 2 * (0 if held is None else len(held[0])), 1 << 14)
        held = _local.buffers = (
            np.empty(size, np.int32),
            np.empty((6, size // 2 + 1), np.int32),
            np.empty(2 * size, np.uint32),
        )
    return held


@numba.njit(cache=True, nogil=True, inline="always")
def _begins(sizes: NDArray[np.int64]) -> NDArray[np.int64]:
    """Where each of the texts (of ``sizes`` characters, joined by code 0) starts."""
    begins = np.zeros(len(sizes), dtype=np.int64)
    for t in range(1, len(sizes)):
        begins[t] = begins[t - 1] + sizes[t - 1] + 1
    return begins


@numba.njit(cache=True, nogil=True)
def kept_spans(
    found: NDArray[np.int32],
    matching: NDArray[np.bool_],
    codes: NDArray[np.uint32],
    sizes: NDArray[np.int64],
    window: int,
    snap: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The candidates (``found``'s rows, as ``candidate_tokens`` wrote them) whose form
    ``matching`` marks: their starts and ends, where each text's run of them
    begins (one cut per text and one after), and each text's snippet as ``(start, end)``
    rows (``ragkit.highlight._window``: ``window`` characters from a little before the
    first span with the most spans ending within ``window`` of its start, moved to the
    space at most ``snap`` before, and on to the space at most ``snap`` after)."""
    texts = len(sizes)
    begins = _begins(sizes)
    keep = np.empty(found.shape[1], dtype=np.bool_)
    for i in range(found.shape[1]):
        keep[i] = matching[found[3, i]]
    m = int(keep.sum())
    starts = np.empty(m, dtype=np.int64)
    ends = np.empty(m, dtype=np.int64)
    cuts = np.zeros(texts + 1, dtype=np.int64)
    j = 0
    for i in range(len(keep)):
        if keep[i]:
            starts[j] = found[1, i]
            ends[j] = found[2, i]
            cuts[found[0, i] + 1] += 1
            j += 1
    for t in range(texts):
        cuts[t + 1] += cuts[t]
    snippets = np.empty((texts, 2), dtype=np.int64)
    for t in range(texts):
        size, base = sizes[t], begins[t]
        if size <= window:
            snippets[t, 0], snippets[t, 1] = 0, size
            continue
        best, most, last = -1, -(1 << 62), cuts[t]
        for i in range(cuts[t], cuts[t + 1]):
            while last < cuts[t + 1] and ends[last] <= starts[i] + window:
                last += 1
            if last - i > most:
                most, best = last - i, starts[i]
        start = 0
        if best >= 0:
            start = max(0, best - window // 5)
            if start:
                for k in range(start, max(0, start - snap) - 1, -1):
                    if codes[base + k] == 32:
                        start = k + 1
                        break
        end = min(size, start + window)
        if end < size:
            for k in range(end - 1, min(size, end + snap)):
                if codes[base + k] == 32:
                    end = k
                    break
        snippets[t, 0], snippets[t, 1] = start, end
    return starts, ends, cuts, snippets
