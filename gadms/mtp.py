"""Masked-token-prediction decoder (IRRA's cross-modal MLM head; METHOD.md section 1).

Text token states (queries) cross-attend to every image token state (keys and values), both
already projected to the shared width by the backbone (CLIP's text projection and visual proj,
as in IRRA), then:
    LayerNorm(text), LayerNorm(image) -> one multi-head cross-attention (no residual, as IRRA)
    -> `layers` transformer blocks (no mask) -> LayerNorm
    -> Linear(width, width) -> QuickGELU -> LayerNorm -> Linear(width, vocab).
The vocabulary head can be evaluated at the labelled positions only: the loss is the same and the
largest matmul (width x 49,408 per token) shrinks to the few masked tokens.
Initialisation follows IRRA (normal with CLIP's width- and depth-scaled standard deviations).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from open_clip.transformer import LayerNorm, QuickGELU, Transformer
from pydantic import Field
from torch import nn

from gadms.config import Config
from gadms.errors import UserError


class MTPConfig(Config):
    """The MTP decoder's shape; its width is the backbone's embedding width (512 for ViT-B-16)."""

    layers: int = Field(4, ge=0, description="transformer blocks after the cross-attention")
    heads: int = Field(8, ge=1, description="attention heads (cross-attention and blocks)")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP width / model width in the blocks (2048/512)")


class MTPDecoder(nn.Module):
    def __init__(self, width: int, vocab_size: int, cfg: MTPConfig) -> None:
        super().__init__()
        if width % cfg.heads:
            raise UserError(f"mtp.heads={cfg.heads} must divide the backbone width {width}")
        self.ln_text = LayerNorm(width)
        self.ln_image = LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, cfg.heads, batch_first=True)
        self.blocks = Transformer(width, cfg.layers, cfg.heads, mlp_ratio=cfg.mlp_ratio, act_layer=QuickGELU)
        self.ln_post = LayerNorm(width)
        self.head = nn.Sequential(
            OrderedDict(
                dense=nn.Linear(width, width),
                gelu=QuickGELU(),
                ln=LayerNorm(width),
                fc=nn.Linear(width, vocab_size),
            )
        )
        self._init_like_irra(width, cfg.layers)

    def _init_like_irra(self, width: int, layers: int) -> None:
        attn_std = width**-0.5
        proj_std = attn_std * (2 * max(layers, 1)) ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.blocks.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.cross_attn.in_proj_weight, std=attn_std)
        nn.init.normal_(self.cross_attn.out_proj.weight, std=proj_std)
        nn.init.normal_(self.head.dense.weight, std=fc_std)
        nn.init.normal_(self.head.fc.weight, std=proj_std)

    def forward(
        self, text_tokens: torch.Tensor, image_tokens: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Vocabulary logits: `[B, N, V]`, or `[K, V]` at the K True entries of `positions` `[B, N]`."""
        image = self.ln_image(image_tokens)
        x = self.cross_attn(self.ln_text(text_tokens), image, image, need_weights=False)[0]
        x = self.ln_post(self.blocks(x))
        if positions is not None:
            x = x[positions]
        return self.head(x)
