"""Optimiser groups, the per-step warm-up + cosine schedule, and the image transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gadms.augment import CLIP_MEAN, CLIP_STD, AugmentConfig, eval_transform, train_transform
from gadms.errors import ConfigError
from gadms.config import load_config
from gadms.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor


def test_new_modules_get_their_lr_multiplier_and_frozen_parameters_are_left_out():
    backbone, decoder = torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)
    decoder.bias.requires_grad_(False)
    cfg = OptimConfig(lr=1e-5, new_module_lr_mult=5.0)
    optimizer = build_optimizer(backbone.parameters(), cfg, new=decoder.parameters())
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(1e-5)
    assert groups["new_modules"]["lr"] == pytest.approx(5e-5)
    assert groups["new_modules"]["params"] == [decoder.weight]
    assert len(groups["backbone"]["params"]) == 2
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["eps"] == 1e-3
    assert [g["name"] for g in build_optimizer(backbone.parameters(), cfg).param_groups] == ["backbone"]


def test_schedule_matches_hand_computed_values():
    cfg = OptimConfig(lr=1.0, epochs=10, warmup_epochs=2, warmup_start_factor=0.1)
    total, warmup = 100, 20  # 10 steps per epoch
    assert lr_factor(0, total, warmup, cfg) == pytest.approx(0.1)
    assert lr_factor(10, total, warmup, cfg) == pytest.approx(0.55)  # half-way through warm-up
    assert lr_factor(20, total, warmup, cfg) == pytest.approx(1.0)  # peak right after warm-up
    assert lr_factor(60, total, warmup, cfg) == pytest.approx(0.5)  # cosine half-way
    assert lr_factor(100, total, warmup, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(150, total, warmup, cfg) == pytest.approx(0.0, abs=1e-12)  # clamped past the end
    floor = OptimConfig(lr=1.0, epochs=10, warmup_epochs=0, min_lr_ratio=0.1)
    assert lr_factor(50, total, 0, floor) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_scheduler_steps_the_optimizer_lr_and_its_state_round_trips():
    cfg = OptimConfig(lr=2.0, epochs=4, warmup_epochs=1, warmup_start_factor=0.0)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:5] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    restored = build_scheduler(build_optimizer(model.parameters(), cfg), cfg, steps_per_epoch=4)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.last_epoch == 6


def test_warmup_longer_than_training_is_a_config_error():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        load_config(OptimConfig, None, ["epochs=2", "warmup_epochs=3"])


def test_eval_transform_resizes_and_normalises_exactly():
    image = Image.new("RGB", (50, 150), (255, 0, 128))
    out = eval_transform((384, 128), AugmentConfig())(image)
    assert out.shape == (3, 384, 128) and out.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), CLIP_MEAN, CLIP_STD)]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4)


def test_train_transform_flips_crops_and_erases_with_the_configured_rates():
    torch.manual_seed(0)
    # Left half black, right half white: a flip moves the bright side, which we can detect.
    array = np.zeros((384, 128, 3), dtype=np.uint8)
    array[:, 64:] = 255
    image = Image.fromarray(array)
    flips = 0
    for _ in range(200):
        out = train_transform((384, 128), AugmentConfig(pad=0, random_erasing_p=0.0))(image)
        assert out.shape == (3, 384, 128)
        flips += int(out[0, :, :32].mean() > out[0, :, 96:].mean())
    # Binomial(200, 0.5): 5 standard deviations is +-35.
    assert 65 <= flips <= 135
    always_erase = train_transform((384, 128), AugmentConfig(hflip_p=0.0, pad=0, random_erasing_p=1.0))
    erased = always_erase(image)
    zero_fraction = (erased.abs().sum(dim=0) == 0).float().mean().item()
    assert 0.02 - 1e-3 <= zero_fraction <= 0.4 + 1e-3
