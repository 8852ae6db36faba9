"""The dual encoder: an open_clip CLIP adapted to 384x128 person crops (METHOD.md section 1).

`Backbone` wraps an open_clip `CLIP` model and adds what GA-DMS needs on top of it:
- image CLS after ln_post + proj, and optionally every image token projected the same way (the MTP
  decoder's keys and values, IRRA's design);
- text EOT features after ln_final + projection, and optionally every projected text token;
- `text_with_internals`: the text encoder re-run over its last L layers with the per-head q, k, v,
  the EOT row of the attention probabilities and the attention output before out_proj exposed.
  The re-run calls the real modules' own parameters, detached (no copy, no parameter in the graph),
  so the GASS gradient pass can never put gradients on parameters.

Weights come from an open_clip pretrained tag (`openai`, from the open_clip / Hugging Face cache),
a local file or an `s3://` URI (open_clip, safetensors or torch state dicts; a GA-DMS model state
dict works too), or are random (`pretrained: null`). The 14x14 pretrained position embedding is
resized to the configured grid (24x8 at 384x128, patch 16) when the weights are loaded.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import open_clip
import torch
import torch.nn.functional as F
from open_clip.factory import load_state_dict
from open_clip.model import resize_pos_embed
from open_clip.pretrained import download_pretrained, get_pretrained_cfg, list_pretrained_tags_by_model
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from pydantic import Field, field_validator
from torch import nn
from torch.func import functional_call

from gadms import storage
from gadms.config import Config
from gadms.errors import UserError
from gadms.tokenizer import CONTEXT_LENGTH, VOCAB_SIZE, eot_positions

# Key prefixes stripped from loaded state dicts: DDP wrappers and a whole GA-DMS model's backbone.
STATE_DICT_PREFIXES = ("module.", "backbone.clip.")
UNSUPPORTED_IMAGE_TOWER = "GA-DMS needs an open_clip ViT image tower (no ResNet, timm or attention pool)"


class BackboneConfig(Config):
    """Which CLIP, at which input size, with which starting weights."""

    architecture: str = Field(
        "ViT-B-16", min_length=1, description="open_clip model name (a built-in config, e.g. ViT-B-16)"
    )
    custom_architecture: dict[str, Any] | None = Field(
        None,
        description="an open_clip model config (embed_dim, vision_cfg, text_cfg[, quick_gelu]) used "
        "instead of `architecture`, e.g. a tiny model for tests and the smoke profile",
    )
    pretrained: str | None = Field(
        "openai",
        description="open_clip pretrained tag (from the local cache), a local file, an s3:// URI, "
        "or null for random initialisation",
    )
    image_size: tuple[int, int] = Field((384, 128), description="input height, width in pixels")
    context_length: int = Field(CONTEXT_LENGTH, ge=3, le=CONTEXT_LENGTH, description="text ids per row")
    quick_gelu: bool | None = Field(
        None, description="QuickGELU activations; null: what the pretrained tag or architecture says"
    )
    pos_embed_interpolation: Literal["bicubic", "bilinear"] = Field(
        "bicubic", description="how the pretrained image position grid is resized on load"
    )
    grad_checkpointing: bool = Field(False, description="recompute encoder activations in backward")
    cache_dir: str | None = Field(None, description="open_clip download cache (default: HF cache)")

    @field_validator("image_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1:
            raise ValueError("both sides must be >= 1")
        return value


@dataclass
class ImageEncoding:
    cls: torch.Tensor  # [B, E] global feature (not normalised)
    tokens: torch.Tensor | None  # [B, 1 + P, E] every token after ln_post + proj, CLS first


@dataclass
class TextEncoding:
    eot: torch.Tensor  # [B, E] global feature (not normalised)
    tokens: torch.Tensor | None  # [B, N, E] every token after ln_final + projection


@dataclass
class AttentionInternals:
    """One text layer's attention, as GASS reads it (METHOD.md section 2, step 1)."""

    q: torch.Tensor  # [B, H, N, d] per-head queries (detached)
    k: torch.Tensor  # [B, H, N, d] per-head keys (detached)
    v: torch.Tensor  # [B, H, N, d] per-head values (detached)
    attn_eot: torch.Tensor  # [B, H, N] attention probabilities of the EOT query (detached)
    output: torch.Tensor  # [B, N, H*d] attention output before out_proj, IN the graph


class Backbone(nn.Module):
    """An open_clip CLIP with GA-DMS's feature access. Build with `Backbone.from_config`."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip
        _check_supported(clip, self._text)
        # The temperature is fixed (METHOD.md section 1): CLIP's own scale is unused, so freeze it
        # (an unused trainable parameter would also break DDP's gradient reduction).
        for name in ("logit_scale", "logit_bias"):
            param = getattr(clip, name, None)
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> Backbone:
        model_cfg, quick_gelu_default = _model_config(cfg)
        vision = model_cfg["vision_cfg"]
        if isinstance(vision.get("layers"), (list, tuple)) or vision.get("timm_model_name"):
            raise UserError(f"{_arch_name(cfg)}: {UNSUPPORTED_IMAGE_TOWER}")
        model_cfg["vision_cfg"]["image_size"] = list(cfg.image_size)
        model_cfg["text_cfg"]["context_length"] = cfg.context_length
        quick_gelu = cfg.quick_gelu if cfg.quick_gelu is not None else quick_gelu_default
        model_cfg["quick_gelu"] = bool(quick_gelu)
        custom_text = bool(model_cfg.pop("custom_text", False))
        if model_cfg["text_cfg"].get("hf_model_name"):
            raise UserError(f"{_arch_name(cfg)}: Hugging Face text towers are not supported (CLIP BPE only)")
        model_cfg.pop("multimodal_cfg", None)
        clip_cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
        try:
            clip = clip_cls(**model_cfg)
        except (TypeError, ValueError, AssertionError) as err:
            raise UserError(f"{_arch_name(cfg)}: cannot build this open_clip config ({err})") from None
        backbone = cls(clip)
        if cfg.pretrained is not None:
            load_pretrained(clip, cfg)
        if cfg.grad_checkpointing:
            clip.set_grad_checkpointing(True)
        return backbone

    @property
    def _text(self) -> nn.Module:
        """The text tower: CustomTextCLIP keeps it in `.text`, CLIP flattens it onto the model."""
        return self.clip.text if hasattr(self.clip, "text") else self.clip

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        """Width of the global features and of the projected token states (512 for ViT-B-16)."""
        return int(self.clip.visual.output_dim)

    @property
    def _projection(self) -> nn.Parameter | nn.Linear | None:
        return self._text.text_projection

    @property
    def text_blocks(self) -> nn.ModuleList:
        return self._text.transformer.resblocks

    @property
    def text_layers(self) -> int:
        return len(self.text_blocks)

    @property
    def context_length(self) -> int:
        return int(self._text.positional_embedding.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self._text.token_embedding.num_embeddings)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.clip.visual.image_size)  # type: ignore[return-value]

    # ---- image -------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, with_tokens: bool = False) -> ImageEncoding:
        """Image CLS after ln_post + proj; with every token projected likewise if asked (IRRA)."""
        visual = self.clip.visual
        if not with_tokens:
            return ImageEncoding(cls=visual(images), tokens=None)
        out = visual.forward_intermediates(
            images,
            indices=[len(visual.transformer.resblocks) - 1],  # the last block, after ln_post
            normalize_intermediates=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        tokens = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        return ImageEncoding(cls=out["image_features"], tokens=tokens)

    # ---- text --------------------------------------------------------------------------------
    def encode_text(self, tokens: torch.Tensor, with_tokens: bool = False) -> TextEncoding:
        """Text features at EOT after ln_final + projection; with every token if asked (MTP)."""
        text = self._text
        x = self._embed_text(tokens)
        x = text.transformer(x, attn_mask=text.attn_mask)
        x = text.ln_final(x)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        eot = eot_positions(tokens)
        if with_tokens:
            projected = self._project(x)
            return TextEncoding(eot=projected[rows, eot], tokens=projected)
        return TextEncoding(eot=self._project(x[rows, eot]), tokens=None)

    def text_with_internals(
        self, tokens: torch.Tensor, last_layers: int, single_head: bool = False
    ) -> tuple[torch.Tensor, list[AttentionInternals]]:
        """EOT features whose graph reaches only the attention outputs of the last L layers.

        The first layers run without a graph; the last `last_layers` are re-run functionally with
        the blocks' own parameters detached. `single_head=True` is the release's variant: those
        layers attend as ONE head of the full width (scale 1/sqrt(width)) instead of their heads.
        Call under `torch.enable_grad()` to get a graph.
        """
        blocks = self.text_blocks
        if not 1 <= last_layers <= len(blocks):
            raise UserError(f"scoring.layers={last_layers}: the text encoder has {len(blocks)} layers")
        text = self._text
        mask = text.attn_mask
        first = len(blocks) - last_layers
        with torch.no_grad():
            x = self._embed_text(tokens)
            x = _run_blocks(blocks[:first], x, mask, text.transformer.batch_first)
        # A leaf that requires grad starts a graph that holds no parameters at all.
        x = x.detach().requires_grad_(True)
        eot = eot_positions(tokens)
        internals = []
        for block in blocks[first:]:
            x, inner = _block_with_internals(block, x, mask, eot, single_head)
            internals.append(inner)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        features = _detached_call(text.ln_final, x[rows, eot])
        return self._project(features, detach=True), internals

    def _embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        text = self._text
        dtype = text.transformer.get_cast_dtype()
        return text.token_embedding(tokens).to(dtype) + text.positional_embedding.to(dtype)

    def _project(self, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        proj = self._projection
        if proj is None:
            return x
        if isinstance(proj, nn.Linear):
            return _detached_call(proj, x) if detach else proj(x)
        return x @ (proj.detach() if detach else proj)


def _block_with_internals(
    block: ResidualAttentionBlock,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    eot: torch.Tensor,
    single_head: bool,
) -> tuple[torch.Tensor, AttentionInternals]:
    """One pre-LN residual block, computed exactly as open_clip does, exposing its attention."""
    attn: nn.MultiheadAttention = block.attn
    batch, length, width = x.shape
    heads = 1 if single_head else attn.num_heads
    head_dim = width // heads
    h = _detached_call(block.ln_1, x)
    qkv = F.linear(h, attn.in_proj_weight.detach(), _detach(attn.in_proj_bias))
    q, k, v = (t.reshape(batch, length, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    logits = (q @ k.transpose(-1, -2)) * head_dim**-0.5
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    probs = logits.softmax(dim=-1)
    output = (probs @ v).transpose(1, 2).reshape(batch, length, width)
    attended = F.linear(output, attn.out_proj.weight.detach(), _detach(attn.out_proj.bias))
    x = x + _detached_call(block.ls_1, attended)
    x = x + _detached_call(block.ls_2, _detached_call(block.mlp, _detached_call(block.ln_2, x)))
    rows = torch.arange(batch, device=x.device)
    inner = AttentionInternals(
        q=q.detach(),
        k=k.detach(),
        v=v.detach(),
        attn_eot=probs.detach()[rows, :, eot],
        output=output,
    )
    return x, inner


def _run_blocks(
    blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None, batch_first: bool
) -> torch.Tensor:
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks:
        x = block(x, attn_mask=mask)
    return x if batch_first else x.transpose(0, 1)


def _detach(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


def _detached_call(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """`module(*args)` with its parameters detached: same storage, no edge into the parameters."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    if not params:
        return module(*args)
    return functional_call(module, params, args)


def _check_supported(clip: nn.Module, text: nn.Module) -> None:
    """GA-DMS needs a ViT image tower with a CLS token and standard text attention blocks."""
    visual = getattr(clip, "visual", None)
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
        raise UserError(f"backbone: {UNSUPPORTED_IMAGE_TOWER}")
    if visual.pool_type != "tok" or visual.final_ln_after_pool:
        raise UserError("backbone: the image tower must pool its CLS token after ln_post (pool_type 'tok')")
    if getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax")) != "argmax":
        raise UserError("backbone: the text tower must pool at EOT (open_clip pool_type 'argmax', CLIP BPE)")
    if getattr(text, "cls_emb", None) is not None:
        raise UserError("backbone: text towers with a CLS embedding are not supported")
    if text.token_embedding.num_embeddings < VOCAB_SIZE:
        raise UserError(f"backbone: text vocabulary must hold the {VOCAB_SIZE} CLIP BPE ids")
    for i, block in enumerate(text.transformer.resblocks):
        attn = getattr(block, "attn", None)
        if (
            type(block) is not ResidualAttentionBlock
            or not isinstance(attn, nn.MultiheadAttention)
            or attn.in_proj_weight is None
            or hasattr(block, "ln_1_kv")
        ):
            raise UserError(f"backbone: text layer {i} is not a standard open_clip attention block")


def _arch_name(cfg: BackboneConfig) -> str:
    if cfg.custom_architecture is not None:
        return "custom_architecture"
    return f"architecture {cfg.architecture!r}"


def _model_config(cfg: BackboneConfig) -> tuple[dict[str, Any], bool]:
    """The open_clip model config to build, and the QuickGELU default for the chosen weights."""
    if cfg.custom_architecture is not None:
        model_cfg = copy.deepcopy(cfg.custom_architecture)
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(model_cfg)
        if missing:
            raise UserError(f"custom_architecture: missing {', '.join(sorted(missing))}")
        return model_cfg, bool(model_cfg.pop("quick_gelu", False))
    model_cfg = open_clip.get_model_config(cfg.architecture)
    if model_cfg is None:
        raise UserError(
            f"architecture {cfg.architecture!r}: not an open_clip model "
            f"(e.g. {', '.join(m for m in open_clip.list_models() if m.startswith('ViT-B'))})"
        )
    quick_gelu = bool(model_cfg.pop("quick_gelu", False))
    if _is_tag(cfg):
        tag_cfg = get_pretrained_cfg(cfg.architecture, cfg.pretrained)
        quick_gelu = quick_gelu or bool(tag_cfg.get("quick_gelu"))
    return model_cfg, quick_gelu


def _is_tag(cfg: BackboneConfig) -> bool:
    """An open_clip pretrained tag of the named architecture (e.g. `openai`), not a path."""
    source = cfg.pretrained
    if source is None or cfg.custom_architecture is not None or storage.is_s3(source):
        return False
    return bool(get_pretrained_cfg(cfg.architecture, source))


def load_pretrained(clip: nn.Module, cfg: BackboneConfig) -> None:
    """Load weights from a tag, a local file or s3:// into `clip`, resizing the image grid."""
    source = cfg.pretrained
    assert source is not None
    with tempfile.TemporaryDirectory(prefix="gadms-weights-") as tmp:
        path = _weights_file(source, cfg, tmp)
        try:
            state_dict = load_state_dict(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
            reason = f"{type(err).__name__}: {err}"
            raise UserError(f"pretrained {source!r}: cannot read weights ({reason})") from None
    state_dict = _strip_prefixes(state_dict)
    if "visual.positional_embedding" in state_dict:
        resize_pos_embed(state_dict, clip, interpolation=cfg.pos_embed_interpolation)
    for name in ("logit_scale", "logit_bias"):
        if name in state_dict and getattr(clip, name, None) is not None:
            state_dict[name] = state_dict[name].reshape(getattr(clip, name).shape)
    own = clip.state_dict()
    mismatched = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or missing or unexpected:
        details = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (
                ("shape mismatch", mismatched), ("missing", missing), ("unexpected", unexpected)
            )
            if keys
        )
        raise UserError(f"pretrained {source!r}: weights do not fit {_arch_name(cfg)} ({details})")
    clip.load_state_dict(state_dict, strict=True)


def _weights_file(source: str, cfg: BackboneConfig, tmp: str) -> str:
    if storage.is_s3(source):
        local = os.path.join(tmp, source.rstrip("/").rsplit("/", 1)[-1] or "weights.pt")
        with open(local, "wb") as out:
            out.write(storage.read_bytes(source))
        return local
    if not _is_tag(cfg):
        path = Path(source).expanduser()
        if not path.is_file():
            custom = cfg.custom_architecture is not None
            tags = [] if custom else list_pretrained_tags_by_model(cfg.architecture)
            hint = f" and not a pretrained tag of {cfg.architecture} ({', '.join(tags)})" if tags else ""
            raise UserError(f"pretrained {source!r}: no such file{hint}")
        return str(path)
    try:
        return download_pretrained(get_pretrained_cfg(cfg.architecture, source), cache_dir=cfg.cache_dir)
    except Exception as err:  # noqa: BLE001 - offline and not cached ends here
        raise UserError(
            f"pretrained {source!r}: {cfg.architecture} weights are not in the local cache and cannot be "
            f"downloaded ({type(err).__name__}); give a local file or s3:// URI instead"
        ) from None


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in STATE_DICT_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    for key in ("input_resolution", "context_length", "vocab_size"):  # OpenAI JIT leftovers
        state_dict.pop(key, None)
    return state_dict
