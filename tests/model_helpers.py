"""Tiny random open_clip models for the model-library tests (nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import torch

from gadms.backbone import Backbone, BackboneConfig
from gadms.step import GADMSConfig
from gadms.tokenizer import CaptionTokenizer

TINY_IMAGE_SIZE = (32, 16)  # 4 x 2 patches of 8 px


def tiny_architecture(text_layers: int = 3, text_heads: int = 4, width: int = 32) -> dict[str, Any]:
    return {
        "embed_dim": width,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": width, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": text_heads,
                     "layers": text_layers},
    }


def tiny_backbone_config(**overrides: Any) -> BackboneConfig:
    values: dict[str, Any] = {"custom_architecture": tiny_architecture(), "pretrained": None,
                              "image_size": TINY_IMAGE_SIZE}
    return BackboneConfig(**{**values, **overrides})


def tiny_backbone(seed: int = 0, dtype: torch.dtype = torch.float64, **overrides: Any) -> Backbone:
    torch.manual_seed(seed)
    return Backbone.from_config(tiny_backbone_config(**overrides)).to(dtype)


def tiny_gadms_config(**sections: Any) -> GADMSConfig:
    data: dict[str, Any] = {
        "backbone": tiny_backbone_config().model_dump(),
        "mtp": {"layers": 1, "heads": 2},
        "scoring": {"layers": 2},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return GADMSConfig.model_validate(data)


CAPTIONS = [
    "a man in a red shirt",
    "a woman with long black hair wearing a blue dress, white sneakers and carrying a brown leather bag",
    "young man",
    "the person wears a grey hoodie and dark jeans and holds a phone in the left hand",
]


def caption_tokens(captions: list[str] | None = None) -> torch.Tensor:
    return CaptionTokenizer()(captions or CAPTIONS)


def random_images(batch: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *TINY_IMAGE_SIZE, generator=generator).to(dtype)
