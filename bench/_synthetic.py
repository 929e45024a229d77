"""A synthetic corpus shaped like real passages and their embeddings, generated on the fly.

Text: ~50-150 words per document, half drawn from one of 500 topic vocabularies, half from a
Zipf-distributed background vocabulary of 50,000 words whose 100 most frequent ranks are left
out (they play the part of stop words, which any real analyzer drops).

Vectors (384-d): real sentence embeddings live near a low-dimensional manifold, so each
vector is a topic centre in a 48-d latent space plus latent noise, mapped to 384-d, plus a
little isotropic noise. (Purely isotropic random vectors would measure an ANN index on data
nobody searches: every point is nearly equidistant from every other.)

Queries: four words of a random document (two topic words, two background words) and a
vector near that document's latent point. Metadata: ``bucket`` (i % 10, for a 10% filter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOCAB = 50_000
TOPICS = 500
TOPIC_WORDS = 200
LATENT = 48
DIM = 384


def _word(i: int) -> str:
    # Letters only, so the stemmer and tokenizer treat every id as one distinct word.
    letters = "bcdfghjklmnpqrstvwxz"
    out = ""
    i += 1
    while i:
        i, r = divmod(i, len(letters))
        out += letters[r]
    return out + "a"


@dataclass
class SyntheticCorpus:
    texts: list[str]
    vectors: np.ndarray
    buckets: np.ndarray
    query_texts: list[str]
    query_vectors: np.ndarray
    query_sources: np.ndarray


def generate(n_docs: int, n_queries: int, seed: int = 0) -> SyntheticCorpus:
    rng = np.random.default_rng(seed)
    words = np.array([_word(i) for i in range(VOCAB)])
    ranks = np.arange(100, VOCAB, dtype=np.float64)
    background_p = 1.0 / ranks
    background_p /= background_p.sum()
    topic_vocab = rng.integers(100, VOCAB, size=(TOPICS, TOPIC_WORDS))
    topic_of = rng.integers(0, TOPICS, n_docs)
    lengths = rng.integers(50, 151, n_docs)
    n_topic = lengths // 2
    total = int(lengths.sum())
    background = rng.choice(np.arange(100, VOCAB), size=total, p=background_p)
    topical = topic_vocab[
        np.repeat(topic_of, n_topic), rng.integers(0, TOPIC_WORDS, int(n_topic.sum()))
    ]
    texts = []
    bg_at = tp_at = 0
    doc_words: list[np.ndarray] = []
    for length, n_t in zip(lengths.tolist(), n_topic.tolist()):
        ids = np.concatenate(
            [topical[tp_at : tp_at + n_t], background[bg_at : bg_at + length - n_t]]
        )
        tp_at += n_t
        bg_at += length - n_t
        doc_words.append(ids)
        texts.append(" ".join(words[ids].tolist()))
    basis = rng.standard_normal((LATENT, DIM)) / np.sqrt(LATENT)
    centres = rng.standard_normal((TOPICS, LATENT))
    latent = centres[topic_of] + 0.6 * rng.standard_normal((n_docs, LATENT))
    vectors = latent @ basis + 0.05 * rng.standard_normal((n_docs, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    sources = rng.integers(0, n_docs, n_queries)
    query_texts = []
    for doc in sources.tolist():
        ids = doc_words[doc]
        half = n_topic[doc]
        picked = np.concatenate([rng.choice(ids[:half], 2), rng.choice(ids[half:], 2)])
        query_texts.append(" ".join(words[picked].tolist()))
    q_latent = latent[sources] + 0.4 * rng.standard_normal((n_queries, LATENT))
    query_vectors = q_latent @ basis + 0.05 * rng.standard_normal((n_queries, DIM))
    query_vectors = (query_vectors / np.linalg.norm(query_vectors, axis=1, keepdims=True)).astype(
        np.float32
    )
    return SyntheticCorpus(
        texts, vectors, np.arange(n_docs) % 10, query_texts, query_vectors, sources
    )
