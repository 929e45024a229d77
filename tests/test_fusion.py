"""Fusion functions against hand-computed examples and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit import Record
from ragkit.backends import LocalShard
from ragkit.errors import InvalidInputError
from ragkit.fusion import (
    Fused,
    Fusion,
    by_score_then_id,
    fuse,
    fuse_dbsf,
    fuse_relative_score,
    fuse_rrf,
)
from ragkit.request import SearchRequest
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


RAGKIT_FUSIONS = [m for m in Fusion if m is not Fusion.NATIVE]  # native: the engine fuses


def test_native_fusion_is_the_engines_and_ragkit_refuses_it() -> None:
    with pytest.raises(InvalidInputError, match="native"):
        fuse(Fusion.NATIVE, [DENSE, EMPTY], [0.5, 0.5])


@pytest.mark.parametrize("method", RAGKIT_FUSIONS)
def test_an_empty_leg_leaves_the_other_legs_order(method: Fusion) -> None:
    got = fuse(method, [DENSE, EMPTY], [0.5, 0.5])
    assert got.ids == ["a", "b", "c"]
    assert all(got.leg_rank(1, i) is None for i in range(len(got)))


@pytest.mark.parametrize("method", RAGKIT_FUSIONS)
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


# ---- a LocalShard's own ranking (ShardAnswer.ranked) is the fusion of its legs -----------

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]


@st.composite
def _shard_and_requests(draw: st.DrawFn) -> tuple[LocalShard, list[SearchRequest]]:
    """Small vocabularies and vectors drawn from a few directions, so equal scores (ties at
    every cut) are common; a low exact threshold sends some searches through HNSW."""
    n = draw(st.integers(1, 60))
    threshold = draw(st.sampled_from([5, 10_000]))
    shard = LocalShard(exact_threshold=threshold)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    directions = rng.normal(size=(6, 4)).astype(np.float32)  # records share these: ties
    records = []
    for i in range(n):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5))
        direction = directions[draw(st.integers(0, 5))]
        tenant = draw(st.sampled_from([None, None, "t"]))
        records.append(Record(f"r{i:02d}", " ".join(words), {"n": i % 3}, direction, tenant))
    shard.upsert(records)
    requests = []
    for _ in range(3):
        requests.append(
            SearchRequest(
                text=" ".join(draw(st.lists(st.sampled_from([*WORDS, "nothing"]), min_size=1))),
                vector=rng.normal(size=4).astype(np.float32),
                k=draw(st.integers(1, 12)),
                candidates=draw(st.integers(1, 20)),
                alpha=draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])),
                filter=draw(st.sampled_from([None, {"n": {"$lte": 1}}])),
                tenant=draw(st.sampled_from([None, "t"])),
            )
        )
    return shard, requests


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_shard_and_requests())
def test_a_local_shards_own_ranking_is_the_fusion_of_its_legs(
    case: tuple[LocalShard, list[SearchRequest]],
) -> None:
    shard, requests = case
    try:
        for request in requests:
            # One search: the legs, and the shard's own ranking of them
            answer = shard.search(request)
            own = answer.ranked
            assert own is not None
            assert answer.dense is not None and answer.lexical is not None
            legs = fuse(
                Fusion.CALIBRATED,
                [answer.dense, answer.lexical],
                [request.alpha, 1 - request.alpha],
            )
            k = request.k
            got, want = own.head(k), legs.head(k)
            assert list(got.ids) == list(want.ids)
            assert got.scores.tobytes() == want.scores.tobytes()
            np.testing.assert_array_equal(got.leg_scores, want.leg_scores)
            np.testing.assert_array_equal(got.leg_ranks, want.leg_ranks)
            # A second search of the same request (a sharded host's partition) answers the
            # same legs and the same ranking.
            again = shard.search(request)
            assert again.ranked is not None and again.dense is not None
            assert again.lexical is not None
            for leg, alone in ((again.dense, answer.dense), (again.lexical, answer.lexical)):
                assert list(leg.ids) == list(alone.ids) and dict(leg.extra) == dict(alone.extra)
                assert leg.scores.tobytes() == alone.scores.tobytes()
            assert list(again.ranked.ids) == list(own.ids)
            assert again.ranked.scores.tobytes() == own.scores.tobytes()
    finally:
        shard.close()


def test_a_store_on_one_local_shard_ranks_there_unless_it_needs_the_legs() -> None:
    shard = LocalShard()
    shard.upsert([Record("a", "alpha beta", {}, np.array([1.0, 0, 0], np.float32))])
    try:
        hybrid = SearchRequest(text="alpha", vector=np.array([1.0, 0, 0], np.float32))
        assert shard.search(hybrid).ranked is not None
        for other in (hybrid.replace(fusion="rrf"), hybrid.replace(mmr=0.5)):
            answer = shard.search(other)
            assert answer.ranked is None and answer.dense is not None
    finally:
        shard.close()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.5, 3.0]), st.text(min_size=1, max_size=4)),
        unique_by=lambda pair: pair[1],
        max_size=40,
    )
)
def test_candidates_go_best_first_and_equal_scores_by_id(pairs: list[tuple[float, str]]) -> None:
    scores = np.array([score for score, _ in pairs], dtype=np.float32)
    ids = [rid for _, rid in pairs]
    want = np.lexsort((np.array(ids, dtype=object), -scores)) if pairs else []
    assert by_score_then_id(ids, scores).tolist() == list(want)
