"""Optimiser and learning-rate schedule of METHOD.md section 4 (per step, not per epoch).

Pretraining (paper): Adam (0.9, 0.999, eps 1e-3), lr 1e-4, weight decay 4e-5, 5 warm-up epochs then
cosine over 30 epochs. Fine-tuning (IRRA recipe): lr 1e-5 with the new modules (MTP/MLM decoder,
ID classifier) at 5x, cosine with 5 warm-up epochs over 60 epochs. The schedule is evaluated per
optimiser step so that warm-up is smooth whatever the number of steps per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import Field, model_validator

from gadms.config import Config


class OptimConfig(Config):
    optimizer: Literal["adam", "adamw"] = Field(
        "adam", description="adam: L2 weight decay as the paper; adamw: decoupled decay"
    )
    lr: float = Field(1e-4, gt=0, description="peak learning rate (paper pretraining 1e-4; release 1e-5)")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-3, gt=0, description="Adam epsilon (paper 1e-3)")
    weight_decay: float = Field(4e-5, ge=0)
    new_module_lr_mult: float = Field(
        1.0, gt=0, description="lr multiplier of modules not in the CLIP backbone (IRRA fine-tuning: 5)"
    )
    epochs: int = Field(30, ge=1)
    warmup_epochs: float = Field(5.0, ge=0)
    warmup_start_factor: float = Field(0.1, ge=0, le=1, description="lr factor at step 0 of warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of the peak lr")
    grad_clip_norm: float | None = Field(None, gt=0, description="clip the global grad norm; None: off")

    @model_validator(mode="after")
    def _warmup_within_training(self) -> OptimConfig:
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        return self


def build_optimizer(
    base: Iterable[torch.nn.Parameter], cfg: OptimConfig, new: Iterable[torch.nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """Adam(W) with two parameter groups: `base` (the backbone) at `lr`, `new` modules at
    `lr * new_module_lr_mult` (see `GADMSModel.parameter_groups`)."""
    groups = [{"params": [p for p in base if p.requires_grad], "lr": cfg.lr, "name": "backbone"}]
    new = [p for p in new if p.requires_grad]
    if new:
        groups.append({"params": new, "lr": cfg.lr * cfg.new_module_lr_mult, "name": "new_modules"})
    optimizer_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return optimizer_cls(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak lr at optimiser step `step` (0-based): linear warm-up, then cosine."""
    if warmup_steps > 0 and step < warmup_steps:
        return cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR over `cfg.epochs * steps_per_epoch` steps (its state is checkpointed)."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, cfg))
