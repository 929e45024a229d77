"""Fusion functions against hand-computed examples and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.fusion import Fused, Fusion, fuse, fuse_dbsf, fuse_relative_score, fuse_rrf
from ragkit.schema import Leg


def leg(*pairs: tuple[str, float]) -> Leg:
    return Leg([i for i, _ in pairs], np.array([s for _, s in pairs], dtype=np.float32))


DENSE = leg(("a", 0.9), ("b", 0.8), ("c", 0.5))
LEXICAL = leg(("b", 12.0), ("d", 6.0), ("a", 3.0))
EMPTY = leg()


def scores(fused: Fused) -> dict[str, float]:
    return dict(zip(fused.ids, fused.scores.tolist()))


def test_rrf_matches_hand_computed_scores() -> None:
    got = fuse_rrf([DENSE, LEXICAL], [1.0, 1.0], k=60)
    expected = {
        "a": 1 / 61 + 1 / 63,
        "b": 1 / 62 + 1 / 61,
        "c": 1 / 63,
        "d": 1 / 62,
    }
    assert scores(got) == pytest.approx(expected)
    assert got.ids == ["b", "a", "d", "c"]


def test_rrf_weights_scale_each_leg() -> None:
    got = scores(fuse_rrf([DENSE, LEXICAL], [0.25, 0.75], k=10))
    assert got["a"] == pytest.approx(0.25 / 11 + 0.75 / 13)
    assert got["d"] == pytest.approx(0.75 / 12)


def test_relative_score_matches_hand_computed_scores() -> None:
    got = scores(fuse_relative_score([DENSE, LEXICAL], [0.5, 0.5]))
    # dense min-max: a 1.0, b 0.75, c 0.0; lexical: b 1.0, d 1/3, a 0.0
    assert got == pytest.approx({"a": 0.5, "b": 0.875, "c": 0.0, "d": 1 / 6})


def test_dbsf_matches_hand_computed_scores() -> None:
    got = scores(fuse_dbsf([leg(("x", 1.0), ("y", 3.0))], [1.0]))
    # mean 2, sd 1: range [-1, 5] -> x = 2/6, y = 4/6
    assert got == pytest.approx({"x": 1 / 3, "y": 2 / 3})


def test_fused_hits_keep_each_legs_raw_score_and_rank() -> None:
    fused = fuse(Fusion.RRF, [DENSE, LEXICAL], [1, 1])
    a, d = fused.ids.index("a"), fused.ids.index("d")
    assert [fused.leg_score(0, a), fused.leg_score(1, a)] == pytest.approx([0.9, 3.0])
    assert [fused.leg_rank(0, a), fused.leg_rank(1, a)] == [1, 3]
    assert fused.leg_score(0, d) is None and fused.leg_score(1, d) == 6.0
    assert [fused.leg_rank(0, d), fused.leg_rank(1, d)] == [None, 2]


@pytest.mark.parametrize("method", list(Fusion))
def test_an_empty_leg_leaves_the_other_legs_order(method: Fusion) -> None:
    got = fuse(method, [DENSE, EMPTY], [0.5, 0.5])
    assert got.ids == ["a", "b", "c"]
    assert all(got.leg_rank(1, i) is None for i in range(len(got)))


@pytest.mark.parametrize("method", list(Fusion))
def test_both_legs_empty_gives_nothing(method: Fusion) -> None:
    assert len(fuse(method, [EMPTY, EMPTY], [0.5, 0.5])) == 0


@pytest.mark.parametrize("method", [Fusion.RELATIVE_SCORE, Fusion.DBSF])
def test_single_hit_and_equal_scores_are_neutral_not_inflated(method: Fusion) -> None:
    single = fuse(method, [leg(("a", 0.7)), EMPTY], [0.5, 0.5])
    assert single.scores[0] == pytest.approx(0.25)
    equal = fuse(method, [leg(("a", 2.0), ("b", 2.0), ("c", 2.0)), EMPTY], [0.5, 0.5])
    assert equal.scores.tolist() == pytest.approx([0.25] * 3)
    # A record found by both legs outranks one found by a single, degenerate leg.
    both = fuse(method, [leg(("a", 0.9), ("b", 0.1)), leg(("a", 5.0))], [0.5, 0.5])
    assert both.ids[0] == "a"
    assert both.scores[0] > both.scores[1]


def test_ties_are_broken_deterministically() -> None:
    got = fuse_rrf([leg(("x", 1.0)), leg(("y", 1.0))], [1.0, 1.0])
    assert got.ids == ["x", "y"]
