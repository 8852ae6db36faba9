"""Dual masking: the curves, their empirical frequencies, 80/10/10, eligibility, at-least-one.

Statistical tolerance: every empirical frequency is compared with its expectation to within
5 binomial standard deviations, sqrt(p (1 - p) / n) (a false failure has probability < 1e-6 per
comparison); draws use fixed generators, so the tests are deterministic as well.
"""

from __future__ import annotations

import math

import pytest
import torch

from gadms.masking import (
    IGNORE_INDEX,
    MaskingConfig,
    dual_masking,
    info_probability,
    mask_tokens,
    noise_probability,
    uniform_masking,
)
from gadms.tokenizer import EOT_ID, MASK_ID, PAD_ID, SOT_ID

SCORES = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]


def _within(observed: torch.Tensor, expected: torch.Tensor, n: int) -> None:
    sd = torch.sqrt(expected * (1 - expected) / n).clamp_min(1e-12)
    z = (observed - expected).abs() / sd
    assert torch.all(z < 5), f"observed {observed.tolist()} expected {expected.tolist()} z {z.tolist()}"


def _captions(rows: int, content: int = len(SCORES)) -> torch.Tensor:
    """`rows` identical captions: sot, `content` word ids, eot, padding to 77."""
    tokens = torch.zeros(rows, 77, dtype=torch.long)
    tokens[:, 0] = SOT_ID
    tokens[:, 1 : content + 1] = torch.arange(1000, 1000 + content)
    tokens[:, content + 1] = EOT_ID
    return tokens


def _scores(rows: int) -> torch.Tensor:
    scores = torch.zeros(rows, 77)
    scores[:, 1 : len(SCORES) + 1] = torch.tensor(SCORES)
    return scores


def test_curve_values_of_method_table():
    cfg = MaskingConfig()
    s = torch.tensor([0.0, 0.1, 0.2, 0.5, 1.0])
    noise = noise_probability(s, cfg)
    info = info_probability(s, cfg)
    assert noise[:3].tolist() == pytest.approx([0.176, 0.100, 0.024], abs=5e-4)
    assert info[:3].tolist() == pytest.approx([0.036, 0.150, 0.264], abs=5e-4)
    assert float(noise[3]) < 1e-4 and float(noise[4]) < 1e-7
    assert float(info[3]) == pytest.approx(0.30, abs=2e-4)  # "~0.30": 0.3 * sigmoid(8)
    # Every constant is a knob: the curves follow their fields.
    other = MaskingConfig(alpha_noise=0.5, sharpness=10, gamma_noise=0.8, alpha_info=0.1, gamma_info=0.3)
    # 1 - 0.2 - 0.8 = 0: the sigmoid's midpoint, p = alpha / 2.
    assert float(noise_probability(torch.tensor(0.2), other)) == pytest.approx(0.5 / (1 + math.exp(0.0)))
    assert float(info_probability(torch.tensor(0.3), other)) == pytest.approx(0.05)


@pytest.mark.parametrize("view", ["noise", "info"])
def test_empirical_frequencies_follow_the_curves(view):
    rows = 20000
    cfg = MaskingConfig(at_least_one="off")
    tokens, scores = _captions(rows), _scores(rows)
    noise, info = dual_masking(tokens, scores, cfg, torch.Generator().manual_seed(1))
    masked = noise if view == "noise" else info
    curve = noise_probability if view == "noise" else info_probability
    observed = masked.selected[:, 1 : len(SCORES) + 1].double().mean(dim=0)
    expected = curve(torch.tensor(SCORES, dtype=torch.float64), cfg)
    _within(observed, expected, rows)


def test_weighted_at_least_one_has_the_documented_marginals():
    rows = 20000
    cfg = MaskingConfig()  # at_least_one = weighted
    tokens, scores = _captions(rows), _scores(rows)
    noise, _ = dual_masking(tokens, scores, cfg, torch.Generator().manual_seed(2))
    p = noise_probability(torch.tensor(SCORES, dtype=torch.float64), cfg)
    expected = p * (1 + torch.prod(1 - p) / p.sum())
    observed = noise.selected[:, 1 : len(SCORES) + 1].double().mean(dim=0)
    _within(observed, expected, rows)
    assert bool(noise.selected.any(dim=1).all())


def test_release_first_forces_the_first_content_token():
    rows = 20000
    cfg = MaskingConfig(at_least_one="release_first")
    tokens, scores = _captions(rows), _scores(rows)
    _, info = dual_masking(tokens, scores, cfg, torch.Generator().manual_seed(3))
    p = info_probability(torch.tensor(SCORES, dtype=torch.float64), cfg)
    expected = p.clone()
    expected[0] = p[0] + torch.prod(1 - p)
    observed = info.selected[:, 1 : len(SCORES) + 1].double().mean(dim=0)
    _within(observed, expected, rows)


def test_every_caption_gets_at_least_one_mask_in_both_views():
    rows = 3000
    cfg = MaskingConfig(alpha_noise=0.001, alpha_info=0.001)
    tokens = _captions(rows, content=3)
    tokens[:10] = _captions(10, content=0)  # empty captions: nothing eligible, nothing masked
    scores = torch.rand(rows, 77, generator=torch.Generator().manual_seed(4))
    noise, info = dual_masking(tokens, scores, cfg, torch.Generator().manual_seed(5))
    for view in (noise, info):
        counts = view.selected.sum(dim=1)
        assert torch.all(counts[10:] >= 1)
        assert torch.all(counts[:10] == 0)
        assert torch.equal(view.tokens[:10], tokens[:10])


def test_replacement_rule_is_80_10_10():
    rows = 4000
    cfg = MaskingConfig(at_least_one="off")
    tokens = _captions(rows)
    view = mask_tokens(tokens, torch.ones(rows, 77), cfg, torch.Generator().manual_seed(6))
    chosen = view.selected
    n = int(chosen.sum())
    assert n == rows * len(SCORES)  # p = 1 selects every eligible token
    new, old = view.tokens[chosen], tokens[chosen]
    fractions = torch.tensor(
        [(new == MASK_ID).double().mean(), ((new != MASK_ID) & (new != old)).double().mean(),
         (new == old).double().mean()]
    )
    # A random id equals the original with probability 1/49404: negligible at this n.
    _within(fractions, torch.tensor([0.8, 0.1, 0.1], dtype=torch.float64), n)
    random_ids = new[(new != MASK_ID) & (new != old)]
    assert int(random_ids.min()) >= 1 and int(random_ids.max()) <= MASK_ID - 1
    assert torch.equal(view.labels[chosen], old)
    assert torch.all(view.labels[~chosen] == IGNORE_INDEX)


def test_special_and_padding_tokens_are_never_touched():
    rows = 500
    tokens = _captions(rows)
    tokens[:, 3] = MASK_ID  # a mask token already in the caption (or the BPE word 'jekyll')
    tokens[:, 5] = PAD_ID  # a stray pad inside the content
    view = mask_tokens(tokens, torch.ones(rows, 77), MaskingConfig(), torch.Generator().manual_seed(7))
    eot = len(SCORES) + 1
    never = torch.zeros(77, dtype=torch.bool)
    never[[0, 3, 5]] = True
    never[eot:] = True
    assert not view.selected[:, never].any()
    assert torch.equal(view.tokens[:, never], tokens[:, never])
    assert view.selected[:, ~never].all()


def test_uniform_masking_rate():
    rows = 20000
    cfg = MaskingConfig(at_least_one="off")
    view = uniform_masking(_captions(rows), cfg, torch.Generator().manual_seed(8))
    observed = view.selected[:, 1 : len(SCORES) + 1].double().mean(dim=0)
    _within(observed, torch.full((len(SCORES),), 0.15, dtype=torch.float64), rows)


def test_views_are_reproducible_with_a_generator():
    tokens, scores = _captions(64), _scores(64)
    a = dual_masking(tokens, scores, MaskingConfig(), torch.Generator().manual_seed(9))
    b = dual_masking(tokens, scores, MaskingConfig(), torch.Generator().manual_seed(9))
    for x, y in zip(a, b):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.labels, y.labels)


def test_config_validation():
    with pytest.raises(ValueError):
        MaskingConfig(mask_token_prob=0.95, random_token_prob=0.1)
    with pytest.raises(ValueError):
        MaskingConfig(alpha_noise=1.5)
    with pytest.raises(ValueError):
        MaskingConfig(random_token_low=10, random_token_high=5)
