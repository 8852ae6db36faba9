"""Dual masking (METHOD.md section 3) and IRRA's uniform random masking (section 4, fine-tuning).

Every eligible token (content position, ordinary word id: never pad, sot, eot or mask) is selected
by its own Bernoulli draw with probability
    noise view (contrastive):   p_noise = alpha_n * sigmoid(lambda * ((1 - s) - gamma_n))
    info view  (MTP):           p_info  = alpha_i * sigmoid(lambda * (s - gamma_i))
or a constant `uniform_ratio` for the fine-tuning MLM. A selected token becomes the mask token
with probability 0.8, a random word id (1..49404) with 0.1, and stays itself with 0.1 (BERT).
Labels hold the original id at selected positions and `IGNORE_INDEX` elsewhere.

At least one token per caption (with any eligible token) is selected in each view:
- `weighted` (ours): a caption whose draws selected nothing gets one eligible token drawn with
  probability proportional to its p, so the forced choice follows the same curve. The marginal
  selection probability is then exactly p_j * (1 + prod_k(1 - p_k) / sum_k p_k).
- `release_first`: the first content position, as the authors' release does.
- `off`: no forcing.
The forced token goes through the same 80/10/10 rule. Everything is vectorised over the batch on
the tokens' device; pass a `torch.Generator` on that device for reproducible draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator

from gadms.config import Config
from gadms.tokenizer import FIRST_WORD_ID, LAST_WORD_ID, MASK_ID, maskable_mask

IGNORE_INDEX = -100  # torch cross-entropy's default ignore index


class MaskingConfig(Config):
    """Constants of the two masking curves and of the replacement rule (METHOD.md section 3)."""

    alpha_noise: float = Field(0.2, ge=0, le=1, description="alpha_n: noise-view masking ceiling")
    alpha_info: float = Field(0.3, ge=0, le=1, description="alpha_i: info-view masking ceiling")
    sharpness: float = Field(20.0, gt=0, description="lambda: steepness of both sigmoids")
    gamma_noise: float = Field(0.9, ge=0, le=1, description="gamma_n: noise curve midpoint on 1 - s")
    gamma_info: float = Field(0.1, ge=0, le=1, description="gamma_i: info curve midpoint on s")
    mask_token_prob: float = Field(0.8, ge=0, le=1, description="selected -> mask token")
    random_token_prob: float = Field(0.1, ge=0, le=1, description="selected -> random word id")
    at_least_one: Literal["weighted", "release_first", "off"] = Field(
        "weighted", description="how a caption with no selected token gets one"
    )
    uniform_ratio: float = Field(0.15, ge=0, le=1, description="fine-tuning MLM: constant selection rate")
    mask_token_id: int = Field(MASK_ID, ge=0, description="id written at masked positions")
    random_token_low: int = Field(FIRST_WORD_ID, ge=0, description="smallest random replacement id")
    random_token_high: int = Field(LAST_WORD_ID, ge=0, description="largest random replacement id")

    @model_validator(mode="after")
    def _consistent(self) -> MaskingConfig:
        if self.mask_token_prob + self.random_token_prob > 1:
            raise ValueError("mask_token_prob + random_token_prob must be <= 1")
        if self.random_token_low > self.random_token_high:
            raise ValueError("random_token_low must be <= random_token_high")
        return self


@dataclass
class MaskedView:
    tokens: torch.Tensor  # [B, N] ids after replacement
    labels: torch.Tensor  # [B, N] original id at selected positions, IGNORE_INDEX elsewhere
    selected: torch.Tensor  # [B, N] bool


def noise_probability(scores: torch.Tensor, cfg: MaskingConfig) -> torch.Tensor:
    """p_noise(s): high for low-score (noisy) tokens; 0.176 / 0.100 / 0.024 at s = 0 / 0.1 / 0.2."""
    return cfg.alpha_noise * torch.sigmoid(cfg.sharpness * ((1 - scores) - cfg.gamma_noise))


def info_probability(scores: torch.Tensor, cfg: MaskingConfig) -> torch.Tensor:
    """p_info(s): high for informative tokens; 0.036 / 0.150 / 0.264 at s = 0 / 0.1 / 0.2."""
    return cfg.alpha_info * torch.sigmoid(cfg.sharpness * (scores - cfg.gamma_info))


def dual_masking(
    tokens: torch.Tensor, scores: torch.Tensor, cfg: MaskingConfig, generator: torch.Generator | None = None
) -> tuple[MaskedView, MaskedView]:
    """The noise view (for the contrastive loss) and the info view (for MTP) of clean captions."""
    scores = scores.float()
    noise = mask_tokens(tokens, noise_probability(scores, cfg), cfg, generator)
    info = mask_tokens(tokens, info_probability(scores, cfg), cfg, generator)
    return noise, info


def uniform_masking(
    tokens: torch.Tensor, cfg: MaskingConfig, generator: torch.Generator | None = None
) -> MaskedView:
    """IRRA's random MLM masking: every eligible token with probability `uniform_ratio`."""
    probability = torch.full(tokens.shape, cfg.uniform_ratio, device=tokens.device)
    return mask_tokens(tokens, probability, cfg, generator)


def mask_tokens(
    tokens: torch.Tensor,
    probability: torch.Tensor,
    cfg: MaskingConfig,
    generator: torch.Generator | None = None,
) -> MaskedView:
    """Select eligible tokens by independent Bernoulli(p) draws, force one per caption, replace."""
    eligible = maskable_mask(tokens)
    probability = probability.float().clamp(0, 1)
    probability = torch.where(eligible, probability, torch.zeros_like(probability))
    selected = _uniform(tokens.shape, tokens.device, generator) < probability
    if cfg.at_least_one != "off":
        selected = _force_one(selected, eligible, probability, cfg.at_least_one, generator)

    draw = _uniform(tokens.shape, tokens.device, generator)
    to_mask = selected & (draw < cfg.mask_token_prob)
    random_limit = cfg.mask_token_prob + cfg.random_token_prob
    to_random = selected & (draw >= cfg.mask_token_prob) & (draw < random_limit)
    random_ids = torch.randint(
        cfg.random_token_low, cfg.random_token_high + 1, tokens.shape, device=tokens.device,
        generator=generator, dtype=tokens.dtype,
    )
    masked = torch.where(to_mask, torch.full_like(tokens, cfg.mask_token_id), tokens)
    masked = torch.where(to_random, random_ids, masked)
    labels = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return MaskedView(tokens=masked, labels=labels, selected=selected)


def _force_one(
    selected: torch.Tensor,
    eligible: torch.Tensor,
    probability: torch.Tensor,
    rule: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    needs_one = ~selected.any(dim=1) & eligible.any(dim=1)
    if rule == "release_first":
        first = eligible.float().argmax(dim=1)  # the first eligible position (position 1 normally)
    else:
        # Weights proportional to p; rows whose p are all 0 fall back to uniform over eligible
        # tokens, and rows with nothing eligible get a dummy weight (never used).
        weights = probability * eligible
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, eligible.to(weights.dtype))
        weights = torch.where(eligible.any(1, keepdim=True), weights, torch.ones_like(weights))
        first = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    forced = torch.zeros_like(selected)
    forced[torch.arange(selected.shape[0], device=selected.device), first] = True
    return selected | (forced & needs_one.unsqueeze(1))


def _uniform(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)
