"""Checkpoints: a round trip restores everything needed to continue; incompatible models are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gadms.checkpoint import TrainingProgress, load_checkpoint, read_meta, save_checkpoint
from gadms.errors import UserError
from gadms.optim import OptimConfig, build_optimizer, build_scheduler


def make(seed: int, width: int = 4):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
    cfg = OptimConfig(lr=1e-2, epochs=3, warmup_epochs=1)
    optimizer = build_optimizer(model.parameters(), cfg)
    return model, optimizer, build_scheduler(optimizer, cfg, steps_per_epoch=5)


def train_steps(model, optimizer, scheduler, n: int) -> list[float]:
    losses = []
    for _ in range(n):
        x = torch.randn(8, 3)  # draws from the global RNG, which the checkpoint restores
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def test_resuming_from_a_checkpoint_continues_exactly_like_an_uninterrupted_run(tmp_path: Path):
    model, optimizer, scheduler = make(0)
    train_steps(model, optimizer, scheduler, 4)
    save_checkpoint(tmp_path / "ckpt", model, TrainingProgress(step=4, epoch=0, metrics={"loss": 1.0}),
                    optimizer, scheduler, config={"name": "x"})
    reference = train_steps(model, optimizer, scheduler, 3)

    other, other_opt, other_sched = make(123)  # different initial weights, fresh optimiser state
    torch.manual_seed(999)  # and a different RNG position
    progress = load_checkpoint(tmp_path / "ckpt", other, other_opt, other_sched)
    assert progress == TrainingProgress(step=4, epoch=0, best_metric=None, metrics={"loss": 1.0})
    assert train_steps(other, other_opt, other_sched, 3) == pytest.approx(reference, rel=0, abs=0)
    assert read_meta(tmp_path / "ckpt")["config"] == {"name": "x"}


def test_incompatible_model_is_refused_with_one_line(tmp_path: Path):
    model, optimizer, scheduler = make(0, width=4)
    save_checkpoint(tmp_path / "ckpt", model, TrainingProgress())
    wider, _, _ = make(0, width=5)
    with pytest.raises(UserError, match=r"incompatible checkpoint: '0.weight' has shape \[4, 3\], the model \[5, 3\]"):
        load_checkpoint(tmp_path / "ckpt", wider)
    deeper = torch.nn.Sequential(*make(0)[0], torch.nn.Linear(2, 2))
    with pytest.raises(UserError, match="it has no parameter '3.weight'"):
        load_checkpoint(tmp_path / "ckpt", deeper)
    with pytest.raises(UserError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "nothing-here", model)
