"""Retrieval metrics: hand-worked cases (ties, matches at the bottom) and a naive full sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gadms.metrics import METRIC_KEYS, binary_auroc, retrieval_metrics


def naive_metrics(sim: np.ndarray, query_pids: np.ndarray, gallery_pids: np.ndarray) -> dict[str, float]:
    """Sort every row completely (descending similarity, non-matches first among equal values)."""
    n_query, n_gallery = sim.shape
    r1 = r5 = r10 = ap_sum = inp_sum = 0.0
    for i in range(n_query):
        match = gallery_pids == query_pids[i]
        order = sorted(range(n_gallery), key=lambda g: (-sim[i, g], bool(match[g])))
        ranked = [bool(match[g]) for g in order]
        hits = [k + 1 for k, m in enumerate(ranked) if m]
        r1 += hits[0] <= 1
        r5 += hits[0] <= 5
        r10 += hits[0] <= 10
        ap_sum += sum((n + 1) / rank for n, rank in enumerate(hits)) / len(hits)
        inp_sum += len(hits) / hits[-1]
    values = [r1, r5, r10, ap_sum, inp_sum]
    return {key: 100 * v / n_query for key, v in zip(METRIC_KEYS, values)}


def test_hand_worked_single_query():
    # Ranked: g0 (other), g1 (match, rank 2), g2 (other), g3 (match, rank 4).
    m = retrieval_metrics(np.array([[0.9, 0.8, 0.7, 0.1]]), np.array([1]), np.array([2, 1, 3, 1]))
    assert m == pytest.approx({"R1": 0.0, "R5": 100.0, "R10": 100.0, "mAP": 50.0, "mINP": 50.0})


def test_ties_rank_non_matches_first():
    # g0 (match) and g1 (other) tie at 0.5: the non-match goes first, so the match is rank 2.
    m = retrieval_metrics(np.array([[0.5, 0.5, 0.1]]), np.array([1]), np.array([1, 2, 2]))
    assert m == pytest.approx({"R1": 0.0, "R5": 100.0, "R10": 100.0, "mAP": 50.0, "mINP": 50.0})
    # A constant similarity is the worst case: every match after every non-match.
    m = retrieval_metrics(np.zeros((1, 12)), np.array([3]), np.array([3, 3] + [0] * 10))
    assert m["R10"] == 0.0
    assert m["mAP"] == pytest.approx(100 * (1 / 11 + 2 / 12) / 2)
    assert m["mINP"] == pytest.approx(100 * 2 / 12)


def test_matches_all_at_the_bottom_and_averaging_over_queries():
    sim = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.12, 0.11, 0.1],  # pid 1 at ranks 11, 12
            [0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.05, 0.01, 0.0],  # pid 2 at rank 1
        ]
    )
    gallery = np.array([0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    m = retrieval_metrics(sim, np.array([1, 2]), gallery)
    ap_bottom, inp_bottom = (1 / 11 + 2 / 12) / 2, 2 / 12
    assert m["R1"] == pytest.approx(50.0) and m["R10"] == pytest.approx(50.0)
    assert m["mAP"] == pytest.approx(100 * (ap_bottom + 1.0) / 2)
    assert m["mINP"] == pytest.approx(100 * (inp_bottom + 1.0) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_problems_match_the_naive_full_sort(seed):
    rng = np.random.default_rng(seed)
    n_query, n_gallery, n_ids = 60, 45, 9
    gallery = rng.integers(0, n_ids, n_gallery)
    queries = rng.choice(gallery, n_query)  # every query has a match
    sim = rng.standard_normal((n_query, n_gallery))
    sim[:, ::3] = np.round(sim[:, ::3], 1)  # plenty of ties, too
    sim[::4] = np.round(sim[::4], 0)
    expected = naive_metrics(sim, queries, gallery)
    for chunk_bytes in (1, 40 * n_gallery * 7, 2**30):  # one query per chunk, 7, all at once
        got = retrieval_metrics(sim, queries, gallery, chunk_bytes=chunk_bytes)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_torch_inputs_and_dtypes_give_the_same_result():
    rng = np.random.default_rng(5)
    gallery = rng.integers(0, 20, 200)
    queries = rng.choice(gallery, 150)
    sim = rng.standard_normal((150, 200)).astype(np.float32)
    expected = naive_metrics(sim.astype(np.float64), queries, gallery)
    assert retrieval_metrics(sim, queries, gallery) == pytest.approx(expected)
    got = retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(queries), torch.from_numpy(gallery))
    assert got == pytest.approx(expected)
    half = torch.from_numpy(sim).to(torch.bfloat16)
    expected_half = naive_metrics(half.double().numpy(), queries, gallery)
    assert retrieval_metrics(half, torch.from_numpy(queries), gallery) == pytest.approx(expected_half)
    assert all(isinstance(v, float) for v in got.values())


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="no matching gallery item"):
        retrieval_metrics(np.zeros((2, 3)), np.array([1, 9]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="pids do not fit"):
        retrieval_metrics(np.zeros((2, 3)), np.array([1]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 0.0]]), np.array([1]), np.array([1, 2]))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(np.zeros(3), np.array([1]), np.array([1, 2, 3]))


# --- AUROC (noise-token detection) -------------------------------------------------------------


def pairwise_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The definition, pair by pair: P(positive > negative) + 0.5 P(tie)."""
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_auroc_hand_worked():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won (0.9>0.5, 0.9>0.1, 0.4>0.1) 3 of 4
    assert binary_auroc(np.array([0.9, 0.5, 0.4, 0.1]), np.array([1, 0, 1, 0], bool)) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert binary_auroc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert binary_auroc(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([True, True, False])) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 7, size=300).astype(float)  # many ties
    labels = rng.random(300) < 0.3
    assert binary_auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="one positive and one negative"):
        binary_auroc(np.ones(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="differ in size"):
        binary_auroc(np.ones(3), np.zeros(2, bool))
