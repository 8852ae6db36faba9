"""Image preprocessing of METHOD.md section 4, on PIL images, returning normalised CHW tensors.

Training: resize to H x W (384 x 128), horizontal flip (p 0.5), pad 10 + random crop back to H x W,
CLIP mean/std, random erasing (scale 0.02-0.4). Evaluation: resize and normalise only. They run on
Ray Data CPU workers in the training job; randomness comes from torch's global RNG, which the job
seeds per worker. Inputs must already be RGB (decoding converts modes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from pydantic import Field
from torchvision.transforms import v2

from gadms.config import Config

CLIP_MEAN: tuple[float, float, float] = tuple(OPENAI_DATASET_MEAN)  # type: ignore[assignment]
CLIP_STD: tuple[float, float, float] = tuple(OPENAI_DATASET_STD)  # type: ignore[assignment]


class AugmentConfig(Config):
    hflip_p: float = Field(0.5, ge=0, le=1)
    pad: int = Field(10, ge=0, description="pixels of padding before the random crop; 0: no crop")
    random_erasing_p: float = Field(0.5, ge=0, le=1)
    random_erasing_scale: tuple[float, float] = (0.02, 0.4)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


def train_transform(image_size: tuple[int, int], cfg: AugmentConfig) -> Callable[[Image.Image], torch.Tensor]:
    height, width = image_size
    steps: list[torch.nn.Module] = [
        v2.ToImage(),
        v2.Resize((height, width), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(cfg.hflip_p),
    ]
    if cfg.pad:
        steps += [v2.Pad(cfg.pad), v2.RandomCrop((height, width))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    if cfg.random_erasing_p:
        # Erased pixels take the mean colour, i.e. 0 after normalisation (as IRRA does).
        steps.append(v2.RandomErasing(cfg.random_erasing_p, scale=cfg.random_erasing_scale, value=0.0))
    return v2.Compose(steps)


def eval_transform(image_size: tuple[int, int], cfg: AugmentConfig) -> Callable[[Image.Image], torch.Tensor]:
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(image_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(cfg.mean, cfg.std),
    ])
