"""The GA-DMS model and its training step as ONE module call (what Ray Train wraps in DDP).

`GADMSModel(cfg)(images, tokens, pids)` returns a `StepOutput` with the total loss to backpropagate,
its detached parts, and (GA-DMS) the token scores and both masked views. Objectives:
- `gadms` (METHOD.md sections 2-4): image forward; GASS scores of the clean captions (online, same
  step, graph freed before the loss passes); noise view and info view; SDM(image CLS, EOT of the
  noise view) + beta * MTP cross-entropy on the info view.
- `sdm`: SDM on clean captions only (the ablation's plain baseline).
- `clip`: CLIP's own InfoNCE on clean captions, no SDM: builds a small stand-in for OpenAI's CLIP
  where those weights cannot be downloaded (GA-DMS itself always starts from a trained CLIP).
- `irra`: SDM on clean captions + MLM on IRRA's uniform random masking; with `num_identities` it
  also adds the ID loss, which is the fine-tuning recipe ("with IRRA", section 4).
The ID loss is added to any objective when `num_identities > 0` and `loss.id_weight > 0`.
The two text passes of a step (masked views, or clean + MLM view) run as one batched forward.
Retrieval uses `image_embeddings` / `text_embeddings` (L2-normalised dual-encoder features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from gadms.backbone import Backbone, BackboneConfig
from gadms.config import Config
from gadms.errors import UserError
from gadms.gass import GASSConfig, token_scores
from gadms.losses import LossConfig, contrastive_loss, id_loss, masked_token_loss, sdm_loss
from gadms.masking import MaskedView, MaskingConfig, dual_masking, uniform_masking
from gadms.mtp import MTPConfig, MTPDecoder

Objective = Literal["gadms", "sdm", "irra", "clip"]


class GADMSConfig(Config):
    """Everything the model and its training step need; a training job nests this as `model`."""

    objective: Objective = Field(
        "gadms",
        description="gadms (the method), sdm (plain SDM), irra (SDM + random-mask MLM), clip (CLIP's "
        "InfoNCE alone: pretrains the stand-in CLIP that offline runs start from)",
    )
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    mtp: MTPConfig = Field(default_factory=MTPConfig)
    scoring: GASSConfig = Field(default_factory=GASSConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    loss: LossConfig = Field(default_factory=LossConfig)


@dataclass
class StepOutput:
    loss: torch.Tensor  # what to backpropagate
    losses: dict[str, torch.Tensor]  # detached parts: sdm, mtp | mlm, id
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # detached: mtp_accuracy, ...
    scores: torch.Tensor | None = None  # GASS scores of the clean captions, [B, N]
    noise_view: MaskedView | None = None
    info_view: MaskedView | None = None


class GADMSModel(nn.Module):
    """Backbone + (when the objective needs it) the MTP decoder + (with identities) a classifier."""

    def __init__(self, cfg: GADMSConfig, num_identities: int = 0, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else Backbone.from_config(cfg.backbone)
        if cfg.objective == "gadms" and cfg.scoring.layers > self.backbone.text_layers:
            layers = self.backbone.text_layers
            raise UserError(f"scoring.layers={cfg.scoring.layers}: the text encoder has {layers} layers")
        width = self.backbone.embed_dim
        self.mtp = MTPDecoder(width, self.backbone.vocab_size, cfg.mtp) if self._uses_decoder() else None
        self.classifier: nn.Linear | None = None
        if num_identities > 0 and cfg.loss.id_weight > 0:
            self.classifier = nn.Linear(width, num_identities)
            nn.init.normal_(self.classifier.weight, std=0.001)  # IRRA's initialisation
            nn.init.zeros_(self.classifier.bias)

    def _uses_decoder(self) -> bool:
        weights = {"gadms": self.cfg.loss.mtp_weight, "irra": self.cfg.loss.mlm_weight, "sdm": 0.0, "clip": 0.0}
        return weights[self.cfg.objective] > 0

    def forward(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        pids: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One training step's forward: `images` `[B, 3, H, W]`, clean `tokens` `[B, N]`, `pids` `[B]`."""
        cfg = self.cfg
        image = self.backbone.encode_image(images, with_tokens=self.mtp is not None)
        scores = noise = info = None
        if cfg.objective == "gadms":
            scores = token_scores(self.backbone, image.cls, tokens, cfg.scoring)
            noise, info = dual_masking(tokens, scores, cfg.masking, generator)
            contrast_tokens, decoder_view, decoder_loss = noise.tokens, info, "mtp"
        elif cfg.objective == "irra":
            info = uniform_masking(tokens, cfg.masking, generator) if self.mtp is not None else None
            contrast_tokens, decoder_view, decoder_loss = tokens, info, "mlm"
        else:
            contrast_tokens, decoder_view, decoder_loss = tokens, None, ""

        batch = tokens.shape[0]
        if self.mtp is not None and decoder_view is not None:
            both = torch.cat([contrast_tokens, decoder_view.tokens])
            text = self.backbone.encode_text(both, with_tokens=True)
            text_eot, decoder_text = text.eot[:batch], text.tokens[batch:]  # type: ignore[index]
        else:
            text_eot, decoder_text = self.backbone.encode_text(contrast_tokens).eot, None

        loss_cfg = cfg.loss
        if cfg.objective == "clip":
            contrast_name = "infonce"
            contrast = contrastive_loss(
                image.cls, text_eot, pids, loss_cfg.temperature, gather=loss_cfg.gather_across_ranks
            )
        else:
            contrast_name = "sdm"
            contrast = sdm_loss(
                image.cls, text_eot, pids, loss_cfg.temperature, loss_cfg.sdm_epsilon,
                gather=loss_cfg.gather_across_ranks,
            )
        total = contrast
        losses = {contrast_name: contrast.detach()}
        metrics: dict[str, torch.Tensor] = {}
        if decoder_text is not None and decoder_view is not None and self.mtp is not None:
            logits = self.mtp(decoder_text, image.tokens, positions=decoder_view.selected)
            labels = decoder_view.labels[decoder_view.selected]
            token_loss = masked_token_loss(logits, labels)
            weight = loss_cfg.mtp_weight if decoder_loss == "mtp" else loss_cfg.mlm_weight
            total = total + weight * token_loss
            losses[decoder_loss] = token_loss.detach()
            if labels.numel():
                metrics[f"{decoder_loss}_accuracy"] = (logits.detach().argmax(-1) == labels).float().mean()
        if self.classifier is not None:
            identity = id_loss(self.classifier(image.cls), self.classifier(text_eot), pids)
            total = total + loss_cfg.id_weight * identity
            losses["id"] = identity.detach()
        return StepOutput(
            loss=total, losses=losses, metrics=metrics, scores=scores, noise_view=noise, info_view=info
        )

    # ---- retrieval and inspection ---------------------------------------------------------------
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image CLS features for retrieval, `[B, E]`."""
        return nn.functional.normalize(self.backbone.encode_image(images).cls.float(), dim=-1)

    def text_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised text EOT features for retrieval, `[B, E]`."""
        return nn.functional.normalize(self.backbone.encode_text(tokens).eot.float(), dim=-1)

    def token_scores(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """GASS scores of matched (image, caption) pairs, `[B, N]` in [0, 1]."""
        with torch.no_grad():
            image_cls = self.backbone.encode_image(images).cls
        return token_scores(self.backbone, image_cls, tokens, self.cfg.scoring)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split into the pretrained backbone and the new modules (which the
        fine-tuning recipe trains at 5x the learning rate)."""
        modules = [m for m in (self.mtp, self.classifier) if m is not None]
        new = [p for m in modules for p in m.parameters() if p.requires_grad]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return {"backbone": backbone, "new": new}
