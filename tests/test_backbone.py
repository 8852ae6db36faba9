"""The open_clip backbone: features, exposed attention internals, weight loading and resizing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import (
    caption_tokens,
    random_images,
    tiny_architecture,
    tiny_backbone,
    tiny_backbone_config,
    tiny_gadms_config,
)

from gadms import storage
from gadms.backbone import Backbone, BackboneConfig
from gadms.errors import UserError
from gadms.step import GADMSModel


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone(seed=0)


def test_features_are_open_clips(backbone):
    tokens = caption_tokens()
    images = random_images(tokens.shape[0])
    text = backbone.encode_text(tokens, with_tokens=True)
    torch.testing.assert_close(text.eot, backbone.clip.encode_text(tokens), rtol=1e-12, atol=1e-12)
    assert text.tokens.shape == (4, 77, 32)
    torch.testing.assert_close(backbone.encode_text(tokens).eot, text.eot, rtol=1e-12, atol=1e-12)
    image = backbone.encode_image(images, with_tokens=True)
    torch.testing.assert_close(image.cls, backbone.clip.encode_image(images), rtol=1e-12, atol=1e-12)
    assert image.tokens.shape == (4, 1 + 4 * 2, 32)  # CLS + 4 x 2 patches, projected
    torch.testing.assert_close(image.tokens[:, 0], image.cls, rtol=1e-12, atol=1e-12)
    assert backbone.encode_image(images).tokens is None


def test_internals_are_the_real_attention(backbone):
    tokens = caption_tokens()
    with torch.enable_grad():
        eot_features, internals = backbone.text_with_internals(tokens, last_layers=2)
    torch.testing.assert_close(eot_features, backbone.clip.encode_text(tokens), rtol=1e-12, atol=1e-12)
    # Recompute the inputs of the last two blocks and ask nn.MultiheadAttention itself.
    clip = backbone.clip
    x = clip.token_embedding(tokens) + clip.positional_embedding
    blocks = clip.transformer.resblocks
    x = blocks[0](x, attn_mask=clip.attn_mask)
    eot = tokens.argmax(dim=1)
    rows = torch.arange(tokens.shape[0])
    for block, inner in zip(blocks[1:], internals):
        h = block.ln_1(x)
        out, weights = block.attn(
            h, h, h, attn_mask=clip.attn_mask, need_weights=True, average_attn_weights=False
        )
        torch.testing.assert_close(inner.attn_eot, weights[rows, :, eot], rtol=1e-10, atol=1e-12)
        projected = F.linear(inner.output, block.attn.out_proj.weight, block.attn.out_proj.bias)
        torch.testing.assert_close(projected, out, rtol=1e-10, atol=1e-12)
        assert inner.q.shape == (4, 4, 77, 8) and not inner.q.requires_grad
        x = block(x, attn_mask=clip.attn_mask)
    # No parameter is part of the graph: no gradient can reach any of them.
    params = [p for p in backbone.parameters() if p.requires_grad]
    grads = torch.autograd.grad(eot_features.sum(), params, allow_unused=True)
    assert all(g is None for g in grads)


def test_single_head_variant_reruns_as_one_wide_head(backbone):
    tokens = caption_tokens()
    with torch.enable_grad():
        _, internals = backbone.text_with_internals(tokens, last_layers=2, single_head=True)
    assert internals[0].q.shape == (4, 1, 77, 32) and internals[0].attn_eot.shape == (4, 1, 77)


def test_random_vit_b16_has_the_person_grid():
    model = Backbone.from_config(BackboneConfig(pretrained=None))
    assert model.image_size == (384, 128) and tuple(model.clip.visual.grid_size) == (24, 8)
    assert model.embed_dim == 512 and model.text_layers == 12 and model.vocab_size == 49408
    assert not model.clip.logit_scale.requires_grad  # fixed temperature


def test_weights_from_a_file_are_loaded_and_the_grid_resized(tmp_path):
    # A square-image model (4 x 4 grid), like pretrained CLIP, loaded into the 4 x 2 person grid.
    square_cfg = tiny_backbone_config(image_size=(32, 32))
    torch.manual_seed(5)
    square = Backbone.from_config(square_cfg)
    path = tmp_path / "square.pt"
    torch.save(square.clip.state_dict(), path)
    person = Backbone.from_config(tiny_backbone_config(pretrained=str(path)))
    old = square.clip.visual.positional_embedding.detach()
    new = person.clip.visual.positional_embedding.detach()
    assert new.shape == (1 + 4 * 2, 32)
    torch.testing.assert_close(new[0], old[0])  # the CLS position is kept
    grid = old[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(4, 2), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(new[1:], expected.permute(0, 2, 3, 1).reshape(8, -1))
    for name, value in square.clip.state_dict().items():
        if name != "visual.positional_embedding":
            assert torch.equal(person.clip.state_dict()[name], value), name


def test_weights_from_s3_and_from_a_gadms_checkpoint(tmp_path, s3_bucket):
    torch.manual_seed(6)
    model = GADMSModel(tiny_gadms_config())
    path = tmp_path / "gadms.pt"
    assert all(k.startswith(("backbone.clip.", "mtp.")) for k in model.state_dict())  # nothing twice
    torch.save(model.state_dict(), path)
    uri = f"{s3_bucket}/runs/gadms.pt"
    storage.write_bytes_atomic(uri, path.read_bytes())
    for source in (str(path), uri):
        loaded = Backbone.from_config(tiny_backbone_config(pretrained=source))
        for name, value in model.backbone.clip.state_dict().items():
            assert torch.equal(loaded.clip.state_dict()[name], value), name


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="not an open_clip model"):
        Backbone.from_config(BackboneConfig(architecture="ViT-X-99", pretrained=None))
    with pytest.raises(UserError, match="no such file"):
        Backbone.from_config(tiny_backbone_config(pretrained=str(tmp_path / "missing.pt")))
    other = tmp_path / "other.pt"
    torch.save(tiny_backbone(custom_architecture=tiny_architecture(width=48)).clip.state_dict(), other)
    with pytest.raises(UserError, match="do not fit"):
        Backbone.from_config(tiny_backbone_config(pretrained=str(other)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights"):
        Backbone.from_config(tiny_backbone_config(pretrained=str(garbage)))
    with pytest.raises(UserError, match="ViT image tower"):
        Backbone.from_config(BackboneConfig(architecture="RN50", pretrained=None))


def test_a_tag_that_is_not_cached_is_a_user_error(tmp_path):
    # Offline (tests set HF_HUB_OFFLINE=1) and an empty cache: nothing to load, one clear line.
    with pytest.raises(UserError, match="not in the local cache"):
        Backbone.from_config(BackboneConfig(pretrained="openai", cache_dir=str(tmp_path)))
