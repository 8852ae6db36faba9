"""Gradient-attention similarity score (GASS): how much each caption token supports its image.

METHOD.md section 2, for a batch of matched pairs (image i, clean caption i):
    s_i        = cos(image_cls_i, text_eot_i)
    g^l        = d s_i / d o^l at the EOT row           (o^l: attention output before out_proj)
    w^l_j      = Phi(cos(MSP(q^l)_eot, MSP(k^l)_j))      (Phi: min-max over the caption's positions)
    S_g^l_j    = (g^l . v^l_j) * w^l_j
    S_a^l_j    = A^l[eot, j] / sum_k A^l[eot, k]
    Score_j    = ReLU((1/L) sum_l S_g^l_j * S_a^l_j), content tokens only, then min-max to [0, 1].
With the model's real heads (ours) every quantity is per head (g^l split the way out_proj reads
it) and the per-head products are averaged over heads; `heads: release_single` re-runs the layers
as one full-width head as the authors' release does. All L gradients come from ONE autograd.grad
call on a graph that contains no parameters and is freed when the call returns.

Choices the paper leaves open (ours, documented here and in the config):
- MSP runs over each caption's own positions 0..eot (pooled in non-overlapping windows of c,
  the last window may be shorter, then linearly interpolated back, align_corners=False), so a
  caption's scores do not depend on how much padding follows it. It is applied as a precomputed
  linear operator per caption length, so the whole batch is one batched matmul.
- Phi and the final normalisation map a constant set of values to 0 (no token stands out).
- `score_norm: batch` min-maxes over every content token of the (per-rank) batch, as the release.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from gadms.backbone import AttentionInternals, Backbone
from gadms.config import Config
from gadms.tokenizer import content_mask, eot_positions

_TINY = 1e-12


class GASSConfig(Config):
    """GASS token scoring (METHOD.md section 2)."""

    layers: int = Field(8, ge=1, description="L: how many of the last text layers are scored")
    scales: tuple[int, ...] = Field((1, 2), min_length=1, description="MSP window sizes c")
    heads: Literal["multi", "release_single"] = Field(
        "multi", description="multi: the model's real heads, averaged (ours); release_single: one wide head"
    )
    denominator: Literal["attention_sum", "release_raw_sum"] = Field(
        "attention_sum",
        description="attention_sum: S_a = A/sum A (paper); release_raw_sum: divide the product by its sum",
    )
    score_norm: Literal["batch", "sample"] = Field(
        "batch", description="min-max over the whole batch (release, published numbers) or per caption"
    )

    @field_validator("scales")
    @classmethod
    def _valid_scales(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 1 for c in value) or len(set(value)) != len(value):
            raise ValueError("scales must be distinct window sizes >= 1")
        return value


def token_scores(
    backbone: Backbone,
    image_features: torch.Tensor,
    tokens: torch.Tensor,
    cfg: GASSConfig,
) -> torch.Tensor:
    """Per-token GASS scores in [0, 1], `[B, N]`; 0 outside content positions (0 < j < eot).

    Computed in float32 at least (float64 for a float64 model, as the reference tests use).

    `image_features` are the pairs' image CLS features `[B, E]` (used detached); `tokens` the clean
    captions `[B, N]`. Leaves no gradient on any parameter.
    """
    importance = token_importance(backbone, image_features, tokens, cfg)
    scores = importance.clamp_min(0) * content_mask(tokens)
    return normalize_scores(scores, content_mask(tokens), cfg.score_norm)


def token_importance(
    backbone: Backbone,
    image_features: torch.Tensor,
    tokens: torch.Tensor,
    cfg: GASSConfig,
) -> torch.Tensor:
    """(1/L) sum_l S_g^l * S_a^l before ReLU and normalisation, `[B, N]` (all positions)."""
    with torch.enable_grad():
        text_eot, internals = backbone.text_with_internals(
            tokens, cfg.layers, single_head=cfg.heads == "release_single"
        )
        dtype = _work_dtype(text_eot)
        image = F.normalize(image_features.detach().to(dtype), dim=-1)
        similarity = (F.normalize(text_eot.to(dtype), dim=-1) * image).sum(dim=-1)  # s_i, [B]
        # Each s_i depends only on its own caption, so one gradient of the sum gives every g_i.
        grads = torch.autograd.grad(similarity.sum(), [inner.output for inner in internals])
    eot = eot_positions(tokens)
    length_ops = msp_operators(tokens.shape[1], cfg.scales, tokens.device)[eot]  # [B, N, N]
    total = torch.zeros(tokens.shape, dtype=dtype, device=tokens.device)
    with torch.autocast(device_type=tokens.device.type, enabled=False):  # score math in >= float32
        for inner, grad in zip(internals, grads):
            total += _layer_importance(inner, grad, eot, length_ops, cfg.denominator)
    return total / len(internals)


def _layer_importance(
    inner: AttentionInternals,
    grad: torch.Tensor,
    eot: torch.Tensor,
    length_ops: torch.Tensor,
    denominator: str,
) -> torch.Tensor:
    """Head-averaged S_g * S_a of one layer, `[B, N]`."""
    dtype = _work_dtype(inner.v)
    q, k, v = inner.q.to(dtype), inner.k.to(dtype), inner.v.to(dtype)
    batch, heads, length, head_dim = v.shape
    rows = torch.arange(batch, device=v.device)
    g = grad[rows, eot].to(dtype).reshape(batch, heads, head_dim)  # out_proj reads heads in order
    gradient_term = torch.einsum("bhd,bhnd->bhn", g, v)
    spatial = spatial_weights(q, k, eot, length_ops)
    attention = inner.attn_eot.to(dtype)
    raw = gradient_term * spatial * attention
    if denominator == "attention_sum":
        product = raw / attention.sum(dim=-1, keepdim=True)
    else:  # release: divide by the sum of the raw importances (its sign can flip the scores)
        total = raw.sum(dim=-1, keepdim=True)
        product = raw / torch.where(total == 0, torch.ones_like(total), total)
    return product.mean(dim=1)


def spatial_weights(
    q: torch.Tensor, k: torch.Tensor, eot: torch.Tensor, length_ops: torch.Tensor
) -> torch.Tensor:
    """w_j = Phi(cos(MSP(q)_eot, MSP(k)_j)) per head, `[B, H, N]`, 0 beyond eot.

    `length_ops[b]` is the MSP operator for caption b's length (see `msp_operators`).
    """
    batch = q.shape[0]
    rows = torch.arange(batch, device=q.device)
    ops = length_ops.to(q.dtype)
    pooled_q_eot = torch.einsum("bn,bhnd->bhd", ops[rows, eot], q)  # only the EOT row is needed
    pooled_k = torch.einsum("bmn,bhnd->bhmd", ops, k)
    cosine = F.cosine_similarity(pooled_q_eot.unsqueeze(2), pooled_k, dim=-1)  # [B, H, N]
    visible = torch.arange(q.shape[2], device=q.device) <= eot.unsqueeze(-1)  # positions 0..eot
    return _min_max(cosine, visible.unsqueeze(1).expand_as(cosine), dim=-1)


_OPERATOR_CACHE: dict[tuple[int, tuple[int, ...], str], torch.Tensor] = {}


def msp_operators(length: int, scales: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """MSP as matrices: `ops[e]` `[N, N]` maps a sequence to its pooled version for a caption whose
    EOT is at position e (n = e + 1 positions; rows and columns beyond n are 0).

    MSP(x) = mean over c in scales of interpolate_linear(avg_pool(x, window c, stride c), n).
    Built by applying exactly those torch ops to identity matrices, so it is the same arithmetic.
    """
    key = (length, tuple(scales), str(device))
    cached = _OPERATOR_CACHE.get(key)
    if cached is None:
        ops = torch.zeros(length, length, length, dtype=torch.float64)
        for n in range(1, length + 1):
            eye = torch.eye(n, dtype=torch.float64).unsqueeze(0)  # channels = input positions
            pooled = [
                eye if c == 1 else F.interpolate(
                    F.avg_pool1d(eye, kernel_size=c, stride=c, ceil_mode=True), size=n, mode="linear",
                    align_corners=False,
                )
                for c in scales
            ]
            # pooled[c][0, input, output]: transpose to output x input.
            ops[n - 1, :n, :n] = torch.stack(pooled).mean(dim=0)[0].T
        cached = ops.to(device)
        _OPERATOR_CACHE[key] = cached
    return cached


def normalize_scores(scores: torch.Tensor, content: torch.Tensor, mode: str) -> torch.Tensor:
    """Min-max to [0, 1] over the batch's or each caption's content tokens; 0 elsewhere."""
    if mode == "batch":
        flat = _min_max(scores.reshape(1, -1), content.reshape(1, -1), dim=-1)
        return flat.reshape(scores.shape)
    return _min_max(scores, content, dim=-1)


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """Score arithmetic runs in float32 at least (bf16/fp16 models) and float64 for float64 ones."""
    return torch.promote_types(t.dtype, torch.float32)


def _min_max(values: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """(x - min) / (max - min) over `valid` entries along `dim`; 0 at invalid ones and when max == min."""
    low = values.masked_fill(~valid, float("inf")).amin(dim=dim, keepdim=True)
    high = values.masked_fill(~valid, float("-inf")).amax(dim=dim, keepdim=True)
    span = high - low
    ok = torch.isfinite(span) & (span > _TINY)
    shift = torch.where(ok, low, torch.zeros_like(low))
    scaled = (values - shift) / torch.where(ok, span, torch.ones_like(span))
    return torch.where(valid & ok, scaled, torch.zeros_like(values))
