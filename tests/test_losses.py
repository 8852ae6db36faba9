"""SDM by hand and across two real processes (gloo), MTP cross-entropy, ID loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gadms.losses import LossConfig, contrastive_loss, id_loss, masked_token_loss, sdm_loss
from gadms.masking import IGNORE_INDEX


def _kl(p: list[float], q: list[float], eps: float = 1e-8) -> float:
    return sum(pi * (math.log(pi) - math.log(qi + eps)) for pi, qi in zip(p, q))


def _softmax(xs: list[float]) -> list[float]:
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_sdm_two_pairs_by_hand():
    # Orthonormal features: cos = identity; tau = 0.5 -> logits = 2 * identity.
    eye = torch.eye(2, dtype=torch.float64)
    loss = sdm_loss(eye * 3.0, eye * 0.5, torch.tensor([7, 9]), temperature=0.5)  # norms do not matter
    p = _softmax([2.0, 0.0])
    per_row = _kl(p, [1.0, 0.0])  # both rows, both directions are the same by symmetry
    assert float(loss) == pytest.approx(2 * per_row, rel=1e-12)
    written_out = p[0] * math.log(p[0] / (1 + 1e-8)) + p[1] * math.log(p[1] / 1e-8)
    assert float(loss) == pytest.approx(2 * written_out)


def test_sdm_shared_identity_by_hand():
    # Three pairs, the first two of one person; image i and text j at known cosines.
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    angle = math.radians(60)
    text = torch.tensor([[1.0, 0.0], [math.cos(angle), math.sin(angle)], [0.0, -1.0]], dtype=torch.float64)
    pids = torch.tensor([4, 4, 5])
    tau = 0.25
    cos = (image @ text.T).tolist()  # rows of unit vectors already
    q = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    i2t = sum(_kl(_softmax([c / tau for c in cos[i]]), q[i]) for i in range(3)) / 3
    t2i = sum(_kl(_softmax([cos[i][j] / tau for i in range(3)]), q[j]) for j in range(3)) / 3
    assert float(sdm_loss(image, text, pids, temperature=tau)) == pytest.approx(i2t + t2i, rel=1e-12)


def test_contrastive_loss_by_hand_with_a_shared_identity():
    """CLIP's InfoNCE (the stand-in CLIP's loss): cross-entropy to the same-pid distribution."""
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    text = torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    pids = torch.tensor([4, 4, 5])
    tau = 0.5
    cos = (image @ text.T).tolist()
    q = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]

    def cross_entropy(p: list[float], target: list[float]) -> float:
        return -sum(t * math.log(pi) for pi, t in zip(p, target))

    i2t = sum(cross_entropy(_softmax([c / tau for c in cos[i]]), q[i]) for i in range(3)) / 3
    t2i = sum(cross_entropy(_softmax([cos[i][j] / tau for i in range(3)]), q[j]) for j in range(3)) / 3
    assert float(contrastive_loss(image, text, pids, temperature=tau)) == pytest.approx(i2t + t2i, rel=1e-12)


def test_sdm_matches_irra_formula_on_random_batches():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(12, 16, generator=generator, dtype=torch.float64)
    text = torch.randn(12, 16, generator=generator, dtype=torch.float64)
    pids = torch.randint(0, 5, (12,), generator=generator)
    # IRRA's compute_sdm, transcribed.
    labels = (pids.reshape(-1, 1) - pids.reshape(1, -1) == 0).double()
    inorm, tnorm = image / image.norm(dim=1, keepdim=True), text / text.norm(dim=1, keepdim=True)
    t2i = 50 * tnorm @ inorm.t()
    i2t = t2i.t()
    dist_ = labels / labels.sum(dim=1)
    i2t_loss = torch.softmax(i2t, 1) * (torch.log_softmax(i2t, 1) - torch.log(dist_ + 1e-8))
    t2i_loss = torch.softmax(t2i, 1) * (torch.log_softmax(t2i, 1) - torch.log(dist_ + 1e-8))
    expected = i2t_loss.sum(1).mean() + t2i_loss.sum(1).mean()
    torch.testing.assert_close(sdm_loss(image, text, pids, temperature=0.02), expected, rtol=1e-10, atol=0)


# ---- two processes -------------------------------------------------------------------------------
SHARDS = [(0, 3), (3, 8)]  # unequal local batches on purpose


class PairEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(6, 4).double()
        self.text = nn.Linear(5, 4).double()

    def forward(self, x_image, x_text, pids):
        return sdm_loss(self.image(x_image), self.text(x_text), pids, temperature=0.1)


def _problem():
    generator = torch.Generator().manual_seed(11)
    x_image = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    x_text = torch.randn(8, 5, generator=generator, dtype=torch.float64)
    pids = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5])  # pids 0 and 1 span both ranks
    torch.manual_seed(12)
    return x_image, x_text, pids, PairEncoder()


def _sdm_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x_image, x_text, pids, model = _problem()
        ddp = nn.parallel.DistributedDataParallel(model)
        lo, hi = SHARDS[rank]
        loss = ddp(x_image[lo:hi], x_text[lo:hi], pids[lo:hi])
        loss.backward()  # DDP averages the parameter gradients over the two ranks
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sdm_on_two_processes_equals_one_process_on_the_whole_batch(tmp_path):
    world = 2
    mp.spawn(_sdm_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    x_image, x_text, pids, model = _problem()
    single = model(x_image, x_text, pids)
    single.backward()
    for rank in range(world):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], single.detach(), rtol=1e-12, atol=0)
        for name, param in model.named_parameters():
            torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-10, atol=1e-14)


# ---- token and identity losses -----------------------------------------------------------------
def test_masked_token_loss_ignores_unlabelled_positions():
    logits = torch.randn(2, 5, 11, dtype=torch.float64)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 4] = 3, 7
    expected = (
        -torch.log_softmax(logits[0, 1], -1)[3] - torch.log_softmax(logits[1, 4], -1)[7]
    ) / 2
    torch.testing.assert_close(masked_token_loss(logits, labels).double(), expected, rtol=1e-6, atol=0)


def test_masked_token_loss_without_labels_is_zero_with_a_graph():
    logits = torch.randn(3, 11, requires_grad=True)
    loss = masked_token_loss(logits, torch.full((3,), IGNORE_INDEX))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_id_loss_is_the_mean_of_both_cross_entropies():
    image_logits, text_logits = torch.randn(4, 6), torch.randn(4, 6)
    pids = torch.tensor([0, 5, 2, 2])
    ce = nn.functional.cross_entropy
    expected = (ce(image_logits, pids) + ce(text_logits, pids)) / 2
    torch.testing.assert_close(id_loss(image_logits, text_logits, pids), expected)


def test_loss_config_defaults_are_the_papers():
    cfg = LossConfig()
    assert (cfg.temperature, cfg.mtp_weight, cfg.sdm_epsilon) == (0.02, 0.4, 1e-8)
    with pytest.raises(ValueError):
        LossConfig(temperature=0)
