"""GASS against a slow, obviously-correct reference, and its isolation from the training gradients.

The reference works one caption at a time, one layer at a time (a separate autograd.grad call per
layer), one head at a time, in float64, with MSP, min-max and interpolation written as loops.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_helpers import caption_tokens, random_images, tiny_architecture, tiny_backbone

from gadms import gass as gass_module
from gadms.gass import GASSConfig, msp_operators, token_importance, token_scores
from gadms.losses import sdm_loss

RTOL = 1e-6


def reference_msp(x: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """[n, d] -> [n, d]: window averages (stride = window, last window may be short), linear
    interpolation back to n (half-pixel centres, clamped at 0), mean over scales."""
    n = x.shape[0]
    outs = []
    for c in scales:
        m = math.ceil(n / c)
        pooled = [x[i * c : min((i + 1) * c, n)].mean(dim=0) for i in range(m)]
        rows = []
        for i in range(n):
            src = max((i + 0.5) * m / n - 0.5, 0.0)
            i0 = int(math.floor(src))
            i1 = min(i0 + 1, m - 1)
            lam = src - i0
            rows.append((1 - lam) * pooled[i0] + lam * pooled[i1])
        outs.append(torch.stack(rows))
    return torch.stack(outs).mean(dim=0)


def reference_min_max(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [0.0 for _ in values]
    return [(v - low) / (high - low) for v in values]


def reference_importance(backbone, image_cls, tokens, cfg: GASSConfig) -> torch.Tensor:
    """(1/L) sum_l mean_h S_g * S_a per caption, [B, N] (0 beyond eot), the slow way."""
    clip = backbone.clip
    blocks = list(clip.transformer.resblocks)
    first = len(blocks) - cfg.layers
    out = torch.zeros(tokens.shape, dtype=torch.float64)
    for b in range(tokens.shape[0]):
        row = tokens[b : b + 1]
        eot = int(row[0].argmax())
        n = eot + 1
        with torch.no_grad():
            x = clip.token_embedding(row) + clip.positional_embedding
            for block in blocks[:first]:
                x = block(x, attn_mask=clip.attn_mask)
        x = x.detach().requires_grad_(True)
        layer_outputs, layer_qkv, layer_attn = [], [], []
        for block in blocks[first:]:
            attn = block.attn
            width = attn.embed_dim
            heads = attn.num_heads if cfg.heads == "multi" else 1
            d = width // heads
            h = block.ln_1(x)[0]
            w_in, b_in = attn.in_proj_weight, attn.in_proj_bias
            q = h @ w_in[:width].T + b_in[:width]
            k = h @ w_in[width : 2 * width].T + b_in[width : 2 * width]
            v = h @ w_in[2 * width :].T + b_in[2 * width :]
            head_out, head_attn = [], []
            for hh in range(heads):
                sl = slice(hh * d, (hh + 1) * d)
                logits = q[:, sl] @ k[:, sl].T / math.sqrt(d)
                causal = torch.ones_like(logits, dtype=torch.bool).tril()
                probs = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
                head_out.append(probs @ v[:, sl])
                head_attn.append(probs)
            o = torch.cat(head_out, dim=-1)
            layer_outputs.append(o)
            layer_qkv.append((q.detach(), k.detach(), v.detach(), heads, d))
            layer_attn.append([p.detach() for p in head_attn])
            x = x + (o @ attn.out_proj.weight.T + attn.out_proj.bias).unsqueeze(0)
            x = x + block.mlp(block.ln_2(x))
        text = clip.ln_final(x[0, eot]) @ clip.text_projection
        if cfg.heads == "multi":  # the reference forward must be the real model's forward
            real = clip.encode_text(row)[0].detach()
            torch.testing.assert_close(text.detach(), real, rtol=1e-10, atol=1e-12)
        s = F.cosine_similarity(text, image_cls[b].detach(), dim=0)
        per_layer = []
        for o, (q, k, v, heads, d), probs in zip(layer_outputs, layer_qkv, layer_attn):
            g = torch.autograd.grad(s, o, retain_graph=True)[0][eot]  # one call per layer
            per_head = []
            for hh in range(heads):
                sl = slice(hh * d, (hh + 1) * d)
                mq = reference_msp(q[:n, sl], cfg.scales)
                mk = reference_msp(k[:n, sl], cfg.scales)
                cos = [float(F.cosine_similarity(mq[eot], mk[j], dim=0)) for j in range(n)]
                w = reference_min_max(cos)
                a = [float(probs[hh][eot, j]) for j in range(n)]
                raw = [float(g[sl] @ v[j, sl]) * w[j] * a[j] for j in range(n)]
                if cfg.denominator == "attention_sum":
                    vals = [r / sum(a) for r in raw]
                else:
                    total = sum(raw)
                    vals = [r / total for r in raw]
                per_head.append(vals)
            per_layer.append([sum(col) / heads for col in zip(*per_head)])
        out[b, :n] = torch.tensor([sum(col) / len(per_layer) for col in zip(*per_layer)], dtype=torch.float64)
    return out


def reference_scores(importance: torch.Tensor, tokens: torch.Tensor, norm: str) -> torch.Tensor:
    scores = torch.zeros_like(importance)
    content = [(b, j) for b in range(tokens.shape[0]) for j in range(1, int(tokens[b].argmax()))]
    relu = {(b, j): max(float(importance[b, j]), 0.0) for b, j in content}
    if norm == "batch":
        normed = reference_min_max(list(relu.values()))
        for (b, j), value in zip(relu, normed):
            scores[b, j] = value
    else:
        for b in range(tokens.shape[0]):
            keys = [(bb, j) for bb, j in content if bb == b]
            for key, value in zip(keys, reference_min_max([relu[k] for k in keys])):
                scores[key] = value
    return scores


@pytest.fixture(scope="module")
def setup():
    backbone = tiny_backbone(seed=0)
    tokens = caption_tokens()
    images = random_images(tokens.shape[0])
    with torch.no_grad():
        image_cls = backbone.encode_image(images).cls
    return backbone, tokens, image_cls


@pytest.mark.parametrize(
    "heads,denominator,scales",
    [
        ("multi", "attention_sum", (1, 2)),
        ("multi", "release_raw_sum", (1, 2)),
        ("release_single", "attention_sum", (1, 2)),
        ("release_single", "release_raw_sum", (1, 2)),
        ("multi", "attention_sum", (1, 2, 3)),
    ],
)
def test_gass_matches_slow_reference(setup, heads, denominator, scales):
    backbone, tokens, image_cls = setup
    cfg = GASSConfig(layers=2, heads=heads, denominator=denominator, scales=scales)
    fast = token_importance(backbone, image_cls, tokens, cfg)
    slow = reference_importance(backbone, image_cls, tokens, cfg)
    eot = tokens.argmax(dim=1)
    visible = torch.arange(tokens.shape[1]) <= eot.unsqueeze(1)
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast[visible], slow[visible], rtol=RTOL, atol=1e-12)
    assert (slow[visible] > 0).any() and (slow[visible] < 0).any()  # a non-trivial comparison
    for norm in ("batch", "sample"):
        scores = token_scores(backbone, image_cls, tokens, cfg.model_copy(update={"score_norm": norm}))
        expected = reference_scores(slow, tokens, norm)
        torch.testing.assert_close(scores, expected, rtol=RTOL, atol=1e-9)
        assert scores.min() >= 0 and scores.max() == pytest.approx(1.0)


def test_batch_and_sample_normalisation_differ_as_specified(setup):
    backbone, tokens, image_cls = setup
    batch = token_scores(backbone, image_cls, tokens, GASSConfig(layers=2, score_norm="batch"))
    sample = token_scores(backbone, image_cls, tokens, GASSConfig(layers=2, score_norm="sample"))
    positions = torch.arange(tokens.shape[1])
    content = (positions > 0) & (positions < tokens.argmax(1, keepdim=True))
    assert torch.all(batch[~content] == 0) and torch.all(sample[~content] == 0)
    # Per caption, the sample-normalised maximum is 1 (0 for a caption with no positive token);
    # batch normalisation reaches 1 in one caption only.
    row_max = sample.amax(dim=1)
    assert torch.all((row_max == 0) | (row_max == 1)) and int((row_max == 1).sum()) >= 2
    assert int((batch.amax(dim=1) == 1).sum()) == 1


def test_scores_of_a_caption_do_not_depend_on_its_batch_or_padding(setup):
    backbone, tokens, image_cls = setup
    cfg = GASSConfig(layers=2, score_norm="sample")
    together = token_scores(backbone, image_cls, tokens, cfg)
    for b in range(tokens.shape[0]):
        alone = token_scores(backbone, image_cls[b : b + 1], tokens[b : b + 1], cfg)
        torch.testing.assert_close(alone[0], together[b], rtol=1e-9, atol=1e-12)


def test_msp_operator_is_the_documented_pooling():
    for n in (1, 2, 3, 7, 10):
        x = torch.randn(n, 5, dtype=torch.float64)
        ops = msp_operators(12, (1, 2, 3), "cpu")[n - 1]
        torch.testing.assert_close(ops[:n, :n] @ x, reference_msp(x, (1, 2, 3)))
        assert torch.all(ops[n:] == 0) and torch.all(ops[:, n:] == 0)


def test_all_layer_gradients_come_from_one_autograd_call(setup, monkeypatch):
    backbone, tokens, image_cls = setup
    calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(len(args[1]) if len(args) > 1 else len(kwargs["inputs"]))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(gass_module.torch.autograd, "grad", counting_grad)
    token_scores(backbone, image_cls, tokens, GASSConfig(layers=3))
    assert calls == [3]


def test_scoring_leaves_no_parameter_gradients(setup):
    backbone, tokens, image_cls = setup
    backbone.zero_grad(set_to_none=True)
    images = random_images(tokens.shape[0])
    image_cls = backbone.encode_image(images).cls  # WITH a graph into the image tower
    token_scores(backbone, image_cls, tokens, GASSConfig(layers=3))
    assert all(p.grad is None for p in backbone.parameters())


def test_scoring_does_not_change_the_loss_gradients():
    backbone = tiny_backbone(seed=1)
    tokens = caption_tokens()
    images = random_images(tokens.shape[0], seed=2)
    pids = torch.arange(tokens.shape[0])

    def loss_gradients(score_in_between: bool) -> list[torch.Tensor]:
        backbone.zero_grad(set_to_none=True)
        image = backbone.encode_image(images).cls
        text = backbone.encode_text(tokens).eot
        if score_in_between:  # as in the step: the loss graph is alive while scoring runs
            token_scores(backbone, image, tokens, GASSConfig(layers=3))
        sdm_loss(image, text, pids, temperature=0.02).backward()
        return [p.grad.clone() for p in backbone.parameters() if p.grad is not None]

    plain = loss_gradients(False)
    scored = loss_gradients(True)
    assert len(plain) == len(scored) > 0
    for a, b in zip(plain, scored):
        assert torch.equal(a, b)


def test_scoring_works_under_no_grad_and_in_float32():
    backbone = tiny_backbone(seed=3, dtype=torch.float32)
    tokens = caption_tokens()
    with torch.no_grad():
        image_cls = backbone.encode_image(random_images(tokens.shape[0], dtype=torch.float32)).cls
        scores = token_scores(backbone, image_cls, tokens, GASSConfig(layers=3))
    assert scores.dtype == torch.float32 and scores.shape == tokens.shape
    assert float(scores.max()) == pytest.approx(1.0)


def test_too_many_layers_is_a_user_error(setup):
    from gadms.errors import UserError

    backbone, tokens, image_cls = setup
    with pytest.raises(UserError, match="scoring.layers=4"):
        token_scores(backbone, image_cls, tokens, GASSConfig(layers=4))


def test_config_rejects_bad_scales():
    with pytest.raises(ValueError):
        GASSConfig(scales=(1, 1))
    with pytest.raises(ValueError):
        GASSConfig(scales=(0, 2))
    assert tiny_architecture()["text_cfg"]["layers"] == 3
