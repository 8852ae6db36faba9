"""The MTP decoder: IRRA's layout, and logits at selected positions equal to the full ones."""

from __future__ import annotations

import pytest
import torch

from gadms.errors import UserError
from gadms.mtp import MTPConfig, MTPDecoder


def test_selected_positions_give_the_same_logits_as_the_full_output():
    torch.manual_seed(0)
    decoder = MTPDecoder(width=32, vocab_size=100, cfg=MTPConfig(layers=2, heads=4)).double()
    text = torch.randn(3, 77, 32, dtype=torch.float64)
    image = torch.randn(3, 9, 32, dtype=torch.float64)
    full = decoder(text, image)
    assert full.shape == (3, 77, 100)
    positions = torch.zeros(3, 77, dtype=torch.bool)
    positions[0, 2], positions[2, [5, 9]] = True, True
    picked = decoder(text, image, positions)
    torch.testing.assert_close(picked, full[positions])


def test_decoder_layout_is_irras():
    decoder = MTPDecoder(width=512, vocab_size=49408, cfg=MTPConfig())
    assert len(decoder.blocks.resblocks) == 4
    block = decoder.blocks.resblocks[0]
    assert block.attn.num_heads == 8 and block.mlp.c_fc.out_features == 2048
    assert decoder.cross_attn.num_heads == 8
    assert [type(m).__name__ for m in decoder.head] == ["Linear", "QuickGELU", "LayerNorm", "Linear"]
    assert decoder.head.fc.out_features == 49408


def test_image_tokens_condition_the_prediction():
    torch.manual_seed(1)
    decoder = MTPDecoder(width=32, vocab_size=50, cfg=MTPConfig(layers=1, heads=2))
    text = torch.randn(1, 77, 32)
    a = decoder(text, torch.randn(1, 9, 32))
    b = decoder(text, torch.randn(1, 9, 32))
    assert not torch.allclose(a, b)


def test_heads_must_divide_the_width():
    with pytest.raises(UserError, match="must divide"):
        MTPDecoder(width=30, vocab_size=10, cfg=MTPConfig(heads=8))
