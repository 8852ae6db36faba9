"""Shared by the training-job tests: the smoke recipe pointed at a synthetic world."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs/train/smoke.yaml")


def smoke_overrides(world: Path | str, storage_path: str, name: str, *extra: str) -> list[str]:
    """The smoke recipe on a synthetic world: WebPerson for training, its CUHK-PEDES for evaluation."""
    return [
        f"data.uri={world}/webperson",
        f"eval.benchmarks=[{world}/CUHK-PEDES]",
        f"run.storage_path={storage_path}",
        f"run.name={name}",
        *extra,
    ]


def train_command(overrides: list[str], config: str = SMOKE) -> list[str]:
    return [sys.executable, "-m", "gadms.train", "--config", config, *overrides]
