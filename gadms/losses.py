"""Training losses (METHOD.md section 4): SDM over the global batch, MTP / MLM cross-entropy, ID loss.

SDM (similarity distribution matching, IRRA): with y_ij = [pid_i == pid_j], q_i = y_i / sum_j y_ij
and p_i = softmax_j(cos(v_i, t_j) / tau),
    L_i2t = mean_i KL(p_i || q_i)   (log(q + eps), eps = 1e-8),   L_t2i likewise on the transpose,
    L_sdm = L_i2t + L_t2i.
Under data parallelism every rank gathers the image and text features (and pids) of all ranks,
puts its own tensors back in with their graph, and computes the loss of the GLOBAL batch, so each
rank's loss value equals the single-process loss on the concatenated batch. Gradients then reach
only the local shard; because DDP averages gradients over W ranks while every rank differentiates
the same global loss, the gather's backward scales the local shard's gradient by W. The
DDP-averaged parameter gradient is then exactly the single-process gradient (tests/test_losses.py
checks this with two gloo processes). Ranks may hold different batch sizes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field

from gadms.config import Config
from gadms.masking import IGNORE_INDEX


class LossConfig(Config):
    """Loss weights and constants (METHOD.md sections 1 and 4)."""

    temperature: float = Field(0.02, gt=0, description="tau: fixed, not learned (logit scale 50)")
    mtp_weight: float = Field(
        0.4, ge=0, description="beta: weight of L_mtp in GA-DMS (paper 0.4, release 0.3)"
    )
    mlm_weight: float = Field(
        1.0, ge=0, description="weight of the random-mask MLM loss (IRRA style / fine-tuning)"
    )
    id_weight: float = Field(1.0, ge=0, description="weight of the ID loss when identities are given")
    sdm_epsilon: float = Field(1e-8, gt=0, description="eps in log(q + eps)")
    gather_across_ranks: bool = Field(True, description="SDM over the global batch under torch.distributed")


def sdm_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    pids: torch.Tensor,
    temperature: float,
    epsilon: float = 1e-8,
    gather: bool = True,
) -> torch.Tensor:
    """Similarity distribution matching, both directions, over the global batch (see module doc)."""
    logits, labels = _global_logits(image_features, text_features, pids, temperature, gather)
    log_target = torch.log(labels / labels.sum(dim=1, keepdim=True) + epsilon)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return _kl_rows(logits, log_target) + _kl_rows(logits.t(), log_target.t())


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    pids: torch.Tensor,
    temperature: float,
    gather: bool = True,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (cross-entropy to the same-pid distribution), over the global batch.

    Not part of GA-DMS: it pretrains the small stand-in CLIP that offline runs start from, as the
    method starts from OpenAI's CLIP (itself trained with this loss).
    """
    logits, labels = _global_logits(image_features, text_features, pids, temperature, gather)
    target = labels / labels.sum(dim=1, keepdim=True)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        image_to_text = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        text_to_image = -(target.t() * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
        return image_to_text + text_to_image


def _global_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, pids: torch.Tensor, temperature: float, gather: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-to-text logits `[images, texts]` and same-pid labels, gathered across ranks if asked."""
    image = F.normalize(_at_least_float32(image_features), dim=-1)
    text = F.normalize(_at_least_float32(text_features), dim=-1)
    if gather and _distributed():
        image, text = gather_with_local_grad(image), gather_with_local_grad(text)
        pids = gather_with_local_grad(pids)
    labels = (pids.reshape(-1, 1) == pids.reshape(1, -1)).to(image.dtype)
    # Logits at tau = 0.02 need float32: keep autocast from running this matmul in bf16.
    with torch.autocast(device_type=image.device.type, enabled=False):
        return image @ text.t() / temperature, labels


def _kl_rows(logits: torch.Tensor, log_target: torch.Tensor) -> torch.Tensor:
    """mean_i sum_j p_ij (log p_ij - log q_ij) with p_i = softmax(logits_i)."""
    log_p = F.log_softmax(logits, dim=1)
    return (log_p.exp() * (log_p - log_target)).sum(dim=1).mean()


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled positions; 0 (with a graph) when nothing is labelled.

    `logits` `[..., V]` and `labels` `[...]` with IGNORE_INDEX at unlabelled positions.
    """
    flat_labels = labels.reshape(-1)
    flat_logits = _at_least_float32(logits.reshape(-1, logits.shape[-1]))
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (flat_labels != IGNORE_INDEX).sum().clamp_min(1)  # no host sync, unlike an `if`
    return total / count


def id_loss(image_logits: torch.Tensor, text_logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """IRRA's identity loss: mean of the image and the text classification cross-entropies."""
    image_ce = F.cross_entropy(_at_least_float32(image_logits), pids)
    return (image_ce + F.cross_entropy(_at_least_float32(text_logits), pids)) / 2


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 (bf16/fp16 activations) or float64 (float64 tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithLocalGrad(torch.autograd.Function):
    """all_gather along dim 0 (sizes may differ per rank); backward: the local slice times W."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        size = torch.tensor([local.shape[0]], device=local.device)
        sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
        padded = local.new_zeros((max(counts), *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        parts = [part[:count] for part, count in zip(parts, counts)]
        parts[rank] = local  # our own rows, bit-identical to what the loss would see unsharded
        ctx.start = sum(counts[:rank])
        ctx.count = counts[rank]
        ctx.world = world
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad[ctx.start : ctx.start + ctx.count] * ctx.world


def gather_with_local_grad(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `local` (rank order); gradients flow to this rank's rows only,
    scaled by the world size (see the module docstring). Integer tensors are gathered without grad."""
    if not _distributed():
        return local
    if not local.is_floating_point() or not local.requires_grad:
        with torch.no_grad():
            return _GatherWithLocalGrad.apply(local)
    return _GatherWithLocalGrad.apply(local)
