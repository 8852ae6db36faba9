"""The training step: objectives, isolation of the scoring pass, and a short training run."""

from __future__ import annotations

import random

import pytest
import torch
from model_helpers import caption_tokens, random_images, tiny_gadms_config

from gadms.errors import UserError
from gadms.losses import masked_token_loss, sdm_loss
from gadms.step import GADMSModel


@pytest.mark.parametrize(
    "objective,identities,expected",
    [
        ("gadms", 0, {"sdm", "mtp"}),
        ("sdm", 0, {"sdm"}),
        ("irra", 0, {"sdm", "mlm"}),
        ("irra", 7, {"sdm", "mlm", "id"}),
    ],
)
def test_objectives(objective, identities, expected):
    torch.manual_seed(0)
    model = GADMSModel(tiny_gadms_config(objective=objective), num_identities=identities).double()
    tokens = caption_tokens()
    out = model(random_images(4), tokens, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(0))
    assert set(out.losses) == expected
    assert (out.scores is not None) == (objective == "gadms")
    assert (model.mtp is not None) == (objective != "sdm")
    out.loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]
    groups = model.parameter_groups()
    assert len(groups["backbone"]) + len(groups["new"]) == len(trainable)


def test_gadms_gradients_are_those_of_the_losses_on_the_masked_views():
    """The scoring pass feeds only the masking: the step's gradients equal the gradients of
    SDM + beta * MTP recomputed from its own masked views, without any scoring."""
    torch.manual_seed(1)
    model = GADMSModel(tiny_gadms_config()).double()
    tokens, images, pids = caption_tokens(), random_images(4, seed=3), torch.tensor([0, 1, 2, 0])
    out = model(images, tokens, pids, torch.Generator().manual_seed(4))
    out.loss.backward()
    step_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    backbone, noise, info = model.backbone, out.noise_view, out.info_view
    image = backbone.encode_image(images, with_tokens=True)
    contrast = sdm_loss(image.cls, backbone.encode_text(noise.tokens).eot, pids, temperature=0.02)
    decoded = model.mtp(backbone.encode_text(info.tokens, with_tokens=True).tokens, image.tokens)
    loss = contrast + 0.4 * masked_token_loss(decoded, info.labels)
    torch.testing.assert_close(loss, out.loss, rtol=1e-10, atol=0)
    loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(step_grads[name], param.grad, rtol=1e-8, atol=1e-12, msg=name)
    assert set(step_grads) == {n for n, p in model.named_parameters() if p.grad is not None}


def test_scores_drive_the_views():
    torch.manual_seed(2)
    model = GADMSModel(tiny_gadms_config()).double()
    tokens = caption_tokens()
    out = model(random_images(4), tokens, torch.arange(4), torch.Generator().manual_seed(5))
    assert out.scores.shape == tokens.shape and float(out.scores.max()) == pytest.approx(1.0)
    assert torch.all(out.info_view.selected.sum(1) >= 1) and torch.all(out.noise_view.selected.sum(1) >= 1)


def test_too_many_scored_layers_is_a_user_error():
    with pytest.raises(UserError, match="scoring.layers=5"):
        GADMSModel(tiny_gadms_config(scoring={"layers": 5}))


WORDS = {
    "colour": ["red", "blue", "green", "black", "white", "yellow", "grey", "pink"],
    "top": ["shirt", "jacket", "coat", "sweater", "dress", "hoodie"],
    "bottom": ["jeans", "shorts", "skirt", "trousers"],
    "shoes": ["boots", "sneakers", "sandals"],
}


def _synthetic_pairs(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Images whose top and bottom halves have the colours the captions name, plus noise."""
    rng = random.Random(seed)
    palette = {
        colour: torch.rand(3, generator=torch.Generator().manual_seed(i)) * 2 - 1
        for i, colour in enumerate(WORDS["colour"])
    }
    images, captions = [], []
    for _ in range(n):
        top_c, bottom_c = rng.sample(WORDS["colour"], 2)
        top, bottom, shoes = rng.choice(WORDS["top"]), rng.choice(WORDS["bottom"]), rng.choice(WORDS["shoes"])
        image = torch.empty(3, 32, 16)
        image[:, :16] = palette[top_c].view(3, 1, 1)
        image[:, 16:] = palette[bottom_c].view(3, 1, 1)
        images.append(image + 0.1 * torch.randn(3, 32, 16))
        captions.append(f"a person in a {top_c} {top} and {bottom_c} {bottom} with {shoes}")
    return torch.stack(images), captions


def test_a_short_training_run_lowers_both_losses():
    torch.manual_seed(0)
    model = GADMSModel(tiny_gadms_config())
    images, captions = _synthetic_pairs(16, seed=0)
    tokens = caption_tokens(captions)
    pids = torch.arange(16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(40):
        out = model(images, tokens, pids, generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        history.append((float(out.losses["sdm"]), float(out.losses["mtp"])))
    first = [sum(v) / 5 for v in zip(*history[:5])]
    last = [sum(v) / 5 for v in zip(*history[-5:])]
    assert last[0] < 0.8 * first[0], (first, last)  # SDM
    assert last[1] < 0.9 * first[1], (first, last)  # MTP (from ~ln 49408 = 10.8)


# ---- under DDP, two processes -------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for objective in ("sdm", "gadms"):
            torch.manual_seed(0)
            model = GADMSModel(tiny_gadms_config(objective=objective)).double()
            ddp = DistributedDataParallel(model)
            tokens, images, pids = caption_tokens(), random_images(4, seed=7), torch.tensor([0, 1, 2, 0])
            shard = slice(0, 1) if rank == 0 else slice(1, 4)
            out = ddp(images[shard], tokens[shard], pids[shard], torch.Generator().manual_seed(rank))
            out.loss.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            results[objective] = {"loss": out.loss.detach(), "grads": grads}
        torch.save(results, f"{out_dir}/ddp{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_the_step_under_ddp_on_two_processes(tmp_path):
    """DDP(GADMSModel) trains: the GA-DMS step (scoring inside forward) synchronises gradients, and
    the SDM step's loss and averaged gradients equal one process on the whole batch."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"ddp{r}.pt") for r in range(2)]
    for name, grad in ranks[0]["gadms"]["grads"].items():
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, ranks[1]["gadms"]["grads"][name], rtol=1e-12, atol=0)
    torch.manual_seed(0)
    model = GADMSModel(tiny_gadms_config(objective="sdm")).double()
    out = model(random_images(4, seed=7), caption_tokens(), torch.tensor([0, 1, 2, 0]))
    out.loss.backward()
    for rank in ranks:
        torch.testing.assert_close(rank["sdm"]["loss"], out.loss.detach(), rtol=1e-12, atol=0)
        for name, param in model.named_parameters():
            if param.grad is not None:
                torch.testing.assert_close(rank["sdm"]["grads"][name], param.grad, rtol=1e-8, atol=1e-12)
