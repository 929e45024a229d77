"""Fusion functions against hand-computed examples and degenerate inputs."""

from __future__ import annotations

import pytest

from ragkit.fusion import Fusion, fuse, fuse_dbsf, fuse_relative_score, fuse_rrf
from ragkit.schema import Candidate as C  # noqa: N817 - keeps the examples readable

DENSE = [C("a", 0.9), C("b", 0.8), C("c", 0.5)]
LEXICAL = [C("b", 12.0), C("d", 6.0), C("a", 3.0)]


def scores(fused: list) -> dict[str, float]:
    return {f.id: f.score for f in fused}


def test_rrf_matches_hand_computed_scores() -> None:
    got = fuse_rrf([DENSE, LEXICAL], [1.0, 1.0], k=60)
    expected = {
        "a": 1 / 61 + 1 / 63,
        "b": 1 / 62 + 1 / 61,
        "c": 1 / 63,
        "d": 1 / 62,
    }
    assert scores(got) == pytest.approx(expected)
    assert [f.id for f in got] == ["b", "a", "d", "c"]


def test_rrf_weights_scale_each_leg() -> None:
    got = scores(fuse_rrf([DENSE, LEXICAL], [0.25, 0.75], k=10))
    assert got["a"] == pytest.approx(0.25 / 11 + 0.75 / 13)
    assert got["d"] == pytest.approx(0.75 / 12)


def test_relative_score_matches_hand_computed_scores() -> None:
    got = scores(fuse_relative_score([DENSE, LEXICAL], [0.5, 0.5]))
    # dense min-max: a 1.0, b 0.75, c 0.0; lexical: b 1.0, d 1/3, a 0.0
    assert got == pytest.approx({"a": 0.5, "b": 0.875, "c": 0.0, "d": 1 / 6})


def test_dbsf_matches_hand_computed_scores() -> None:
    got = scores(fuse_dbsf([[C("x", 1.0), C("y", 3.0)]], [1.0]))
    # mean 2, sd 1: range [-1, 5] -> x = 2/6, y = 4/6
    assert got == pytest.approx({"x": 1 / 3, "y": 2 / 3})


def test_fused_hits_keep_each_legs_raw_score_and_rank() -> None:
    by_id = {f.id: f for f in fuse(Fusion.RRF, [DENSE, LEXICAL], [1, 1])}
    assert by_id["a"].leg_scores == [0.9, 3.0]
    assert by_id["a"].leg_ranks == [1, 3]
    assert by_id["d"].leg_scores == [None, 6.0]
    assert by_id["d"].leg_ranks == [None, 2]


@pytest.mark.parametrize("method", list(Fusion))
def test_an_empty_leg_leaves_the_other_legs_order(method: Fusion) -> None:
    got = fuse(method, [DENSE, []], [0.5, 0.5])
    assert [f.id for f in got] == ["a", "b", "c"]
    assert all(f.leg_ranks[1] is None for f in got)


@pytest.mark.parametrize("method", list(Fusion))
def test_both_legs_empty_gives_nothing(method: Fusion) -> None:
    assert fuse(method, [[], []], [0.5, 0.5]) == []


@pytest.mark.parametrize("method", [Fusion.RELATIVE_SCORE, Fusion.DBSF])
def test_single_hit_and_equal_scores_are_neutral_not_inflated(method: Fusion) -> None:
    single = fuse(method, [[C("a", 0.7)], []], [0.5, 0.5])
    assert single[0].score == pytest.approx(0.25)
    equal = fuse(method, [[C("a", 2.0), C("b", 2.0), C("c", 2.0)], []], [0.5, 0.5])
    assert [f.score for f in equal] == pytest.approx([0.25] * 3)
    # A record found by both legs outranks one found by a single, degenerate leg.
    both = fuse(method, [[C("a", 0.9), C("b", 0.1)], [C("a", 5.0)]], [0.5, 0.5])
    assert both[0].id == "a"
    assert both[0].score > both[1].score


def test_ties_are_broken_deterministically() -> None:
    got = fuse_rrf([[C("x", 1.0)], [C("y", 1.0)]], [1.0, 1.0])
    assert [f.id for f in got] == ["x", "y"]
