"""Training state on disk: one directory per checkpoint, written by rank 0, read by every rank.

A checkpoint directory holds `model.pt` (the model's state dict, DDP prefixes stripped),
`training.pt` (optimiser, scheduler, grad scaler, RNG, step, epoch) and `meta.json` (step, epoch,
metrics, the resolved job config, and the model's parameter shapes). Loading checks the shapes
first and refuses an incompatible model with one line naming the first mismatch, instead of
failing deep inside `load_state_dict` or, worse, loading a partial model. Ray Train uploads the
directory to `storage_path` (local or s3://); this module knows nothing of Ray.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gadms.errors import UserError

MODEL_FILE = "model.pt"
TRAINING_FILE = "training.pt"
META_FILE = "meta.json"


@dataclass
class TrainingProgress:
    """Where a run is: optimiser steps taken and epochs completed (resume is at epoch granularity)."""

    step: int = 0
    epoch: int = 0  # completed epochs
    best_metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / FSDP-style wrappers (they keep it as `.module`)."""
    return getattr(model, "module", model)


def parameter_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in unwrap(model).state_dict().items()}


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    progress: TrainingProgress,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(unwrap(model).state_dict(), directory / MODEL_FILE)
    training = {
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    torch.save(training, directory / TRAINING_FILE)
    meta = {
        "step": progress.step,
        "epoch": progress.epoch,
        "best_metric": progress.best_metric,
        "metrics": progress.metrics,
        "config": config or {},
        "parameter_shapes": parameter_shapes(model),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=1))
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{directory}: not a checkpoint (no {META_FILE})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: corrupt checkpoint metadata ({err.msg})") from None


def check_compatible(model: torch.nn.Module, saved_shapes: dict[str, list[int]], source: str) -> None:
    """Raise a one-line UserError at the first parameter the checkpoint lacks, adds or shapes differently."""
    current = parameter_shapes(model)
    for name, shape in current.items():
        if name not in saved_shapes:
            raise UserError(f"{source}: incompatible checkpoint: it has no parameter {name!r}")
        if saved_shapes[name] != shape:
            raise UserError(
                f"{source}: incompatible checkpoint: {name!r} has shape {saved_shapes[name]}, the model {shape}"
            )
    extra = sorted(set(saved_shapes) - set(current))
    if extra:
        raise UserError(f"{source}: incompatible checkpoint: unexpected parameter {extra[0]!r}")


def load_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
) -> TrainingProgress:
    """Load what is asked for into the given objects; returns the progress to continue from."""
    directory = Path(directory)
    meta = read_meta(directory)
    check_compatible(model, meta["parameter_shapes"], str(directory))
    state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state)
    if optimizer is not None or scheduler is not None or scaler is not None or restore_rng:
        training = torch.load(directory / TRAINING_FILE, map_location="cpu", weights_only=False)
        for target, key in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler")):
            if target is not None and training[key] is not None:
                target.load_state_dict(training[key])
        if restore_rng:
            torch.set_rng_state(training["rng"]["torch"])
            np.random.set_state(training["rng"]["numpy"])
            random.setstate(training["rng"]["python"])
    return TrainingProgress(
        step=meta["step"], epoch=meta["epoch"], best_metric=meta["best_metric"], metrics=meta["metrics"]
    )
