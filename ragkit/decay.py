"""Recency (or any distance) decay on the fused score: ``decay={"field": ..., "origin": ...,
"scale": ..., "shape": ...}``.

A hit's score is multiplied by a factor in [0, 1] that falls with the distance ``d`` of its
``field`` from ``origin`` (the curves of Elasticsearch's decay functions):

- ``exp``: ``decay ** (d / scale)``;
- ``gauss``: ``decay ** ((d / scale) ** 2)``;
- ``linear``: ``max(0, 1 - (1 - decay) * d / scale)``;

where ``d`` is ``max(0, |value - origin| - offset)``: at ``scale`` beyond ``offset`` the
factor is ``decay`` (0.5 by default). ``field`` holds ISO 8601 dates (``"2026-12-06"``,
``"2026-12-06T10:00:00Z"``; without a zone: UTC) or numbers; ``origin`` is ``"now"``, a date
or a number of the same kind; ``scale`` and ``offset`` are durations (``"30d"``, ``"12h"``,
``"90m"``, ``"45s"``, ``"2w"``) for dates and numbers for numbers. A record without the field
(or with a value of the other kind) gets the factor ``missing`` (1.0 by default: no penalty).

Thresholds: a calibrated score stays in [0, 1] but now means relevance times recency, so a
threshold tuned without decay keeps fewer hits with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ragkit.errors import InvalidInputError


class DecayShape(StrEnum):
    EXP = "exp"
    GAUSS = "gauss"
    LINEAR = "linear"


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_KEYS = ("field", "origin", "scale", "shape", "offset", "decay", "missing")


@dataclass(frozen=True, slots=True)
class Decay:
    """A validated decay (see the module docstring); ``dates`` says which kind ``field`` is.
    ``origin`` is a number (seconds since the epoch for dates) or ``None`` for "now"."""

    field: str
    origin: float | None
    scale: float
    shape: DecayShape = DecayShape.EXP
    offset: float = 0.0
    decay: float = 0.5
    missing: float = 1.0
    dates: bool = True

    @staticmethod
    def parse(spec: Decay | Mapping[str, Any]) -> Decay:
        """A ``Decay`` from a dict; errors name the bad key or value and what is accepted."""
        if isinstance(spec, Decay):
            return spec
        if not isinstance(spec, Mapping):
            raise InvalidInputError(
                f"decay must be a dict with field, origin, scale and shape, got {spec!r:.80}"
            )
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown:
            raise InvalidInputError(f"decay has unknown keys {unknown}; accepted: {list(_KEYS)}")
        field = spec.get("field")
        if not isinstance(field, str) or not field:
            raise InvalidInputError(f"decay['field'] must name a metadata field, got {field!r}")
        if "scale" not in spec:
            raise InvalidInputError("decay needs a 'scale' (e.g. '30d' for dates, 10 for numbers)")
        origin = spec.get("origin", "now")
        scale = spec["scale"]
        dates = origin == "now" or isinstance(origin, str) or isinstance(scale, str)
        try:
            shape = DecayShape(spec.get("shape", "exp"))
        except ValueError:
            accepted = ", ".join(repr(s.value) for s in DecayShape)
            raise InvalidInputError(
                f"decay['shape']={spec.get('shape')!r} is not supported; accepted: {accepted}"
            ) from None
        return Decay(
            field,
            None if origin == "now" else _point(origin, dates, "origin"),
            _distance(scale, dates, "scale", positive=True),
            shape,
            _distance(spec.get("offset", 0), dates, "offset", positive=False),
            _fraction(spec.get("decay", 0.5), "decay", open_ends=True),
            _fraction(spec.get("missing", 1.0), "missing", open_ends=False),
            dates,
        )

    def factor(self, metadata: Mapping[str, Any], now: float) -> float:
        """The factor for a record's metadata; ``now`` in seconds since the epoch."""
        value = _value(metadata.get(self.field), self.dates)
        if value is None:
            return self.missing
        origin = now if self.origin is None else self.origin
        d = max(0.0, abs(value - origin) - self.offset) / self.scale
        if self.shape is DecayShape.EXP:
            return float(self.decay**d)
        if self.shape is DecayShape.GAUSS:
            return float(self.decay ** (d * d))
        return max(0.0, 1.0 - (1.0 - self.decay) * d)


def parse_date(value: str) -> float | None:
    """Seconds since the epoch for an ISO 8601 date or date-time (UTC without a zone)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _value(raw: Any, dates: bool) -> float | None:
    if dates:
        return parse_date(raw) if isinstance(raw, str) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return float(raw)


def _point(value: Any, dates: bool, name: str) -> float:
    point = _value(value, dates)
    if point is None:
        kind = "'now' or an ISO 8601 date" if dates else "a finite number"
        raise InvalidInputError(f"decay['{name}'] must be {kind}, got {value!r:.60}")
    return point


def _distance(value: Any, dates: bool, name: str, *, positive: bool) -> float:
    amount: float | None = None
    if dates and isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            amount = float(match.group(1)) * _UNITS[match.group(2)]
    elif not isinstance(value, bool) and isinstance(value, int | float):
        amount = float(value)  # (for dates: seconds)
    if amount is None or not math.isfinite(amount) or amount < 0 or (positive and amount == 0):
        kind = "a duration such as '30d', '12h', '90m', '45s', '2w'" if dates else "a number"
        bound = "above 0" if positive else "0 or more"
        raise InvalidInputError(f"decay['{name}'] must be {kind} {bound}, got {value!r:.60}")
    return amount


def _fraction(value: Any, name: str, *, open_ends: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok:
        ok = 0.0 < value < 1.0 if open_ends else 0.0 <= value <= 1.0
    if not ok:
        bound = "strictly between 0 and 1" if open_ends else "between 0 and 1"
        raise InvalidInputError(f"decay['{name}'] must be a number {bound}, got {value!r:.60}")
    return float(value)
