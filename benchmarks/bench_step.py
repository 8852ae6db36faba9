"""Training-step time: GA-DMS vs SDM-only vs IRRA-style (SDM + random-mask MLM), side by side.

All three variants share ONE backbone (and one MTP decoder) and run on the same batch; the
repetitions are interleaved (gadms, irra, sdm, gadms, ...) so drift hits all of them alike, and
the median is reported. A step is forward + backward + Adam update. A phase breakdown of the
GA-DMS step says where its extra time goes (image pass, scoring, masking, text pass, losses,
backward). Runs without Ray; on a GPU:

    python benchmarks/bench_step.py --models vit-b-16 --device cuda --dtype bf16 --batch 128

CPU defaults: the tiny model (batch 32) and ViT-B-16 at 384x128 (batch 4), random weights.
Results are printed and written to outputs/benchmarks/bench_step-<device>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from gadms.backbone import Backbone
from gadms.gass import token_scores
from gadms.losses import masked_token_loss, sdm_loss
from gadms.masking import dual_masking
from gadms.step import GADMSConfig, GADMSModel
from gadms.tokenizer import CaptionTokenizer

OBJECTIVES = ("gadms", "irra", "sdm")
TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 6},
}
MODELS: dict[str, dict[str, Any]] = {
    "tiny": {
        "backbone": {"custom_architecture": TINY, "pretrained": None, "image_size": (64, 32)},
        "mtp": {"layers": 2, "heads": 4},
        "scoring": {"layers": 4},
    },
    "vit-b-16": {"backbone": {"architecture": "ViT-B-16", "pretrained": None, "image_size": (384, 128)}},
}
COLOURS = ["red", "blue", "black", "white", "grey", "green", "yellow", "pink", "brown", "dark blue"]
CLOTHES = ["t-shirt", "jacket", "coat", "sweater", "dress", "hoodie", "shirt", "vest"]
BOTTOMS = ["jeans", "shorts", "skirt", "trousers", "leggings"]


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """WebPerson-like captions of realistic length (20-40 BPE tokens)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(
            f"a {rng.choice(['young', 'middle-aged', 'tall', 'slim'])} {rng.choice(['man', 'woman'])} with "
            f"{rng.choice(['short', 'long', 'curly'])} {rng.choice(['black', 'brown', 'blond'])} hair "
            f"wearing a "
            f"{rng.choice(COLOURS)} {rng.choice(CLOTHES)}, {rng.choice(COLOURS)} {rng.choice(BOTTOMS)} and "
            f"{rng.choice(COLOURS)} shoes, carrying a {rng.choice(COLOURS)} bag and walking forward"
        )
    return out


def build_variants(name: str, device: torch.device) -> tuple[dict[str, GADMSModel], GADMSConfig]:
    torch.manual_seed(0)
    base = GADMSConfig.model_validate(MODELS[name])
    shared = GADMSModel(base).to(device)
    variants = {"gadms": shared}
    for objective in OBJECTIVES[1:]:
        cfg = base.model_copy(update={"objective": objective})
        model = GADMSModel(cfg, backbone=shared.backbone)
        if model.mtp is not None:
            model.mtp = shared.mtp  # the same decoder weights for IRRA's MLM
        variants[objective] = model.to(device)
    return variants, base


def make_batch(backbone: Backbone, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, *backbone.image_size, generator=generator).to(device)
    tokens = CaptionTokenizer()(synthetic_captions(batch)).to(device)
    return images, tokens, torch.arange(batch, device=device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(model, optimizer, batch, device, autocast) -> tuple[float, float]:
    """Seconds for forward + backward, and for the optimizer update."""
    images, tokens, pids = batch
    synchronize(device)
    start = time.perf_counter()
    with autocast():
        out = model(images, tokens, pids)
    out.loss.backward()
    synchronize(device)
    middle = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return middle - start, time.perf_counter() - middle


def gadms_phases(model: GADMSModel, batch, device, autocast) -> dict[str, float]:
    """The GA-DMS step split into its phases (same computation as GADMSModel.forward)."""
    images, tokens, pids = batch
    cfg, backbone = model.cfg, model.backbone
    times: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str):
        synchronize(device)
        start = time.perf_counter()
        yield
        synchronize(device)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start

    with autocast():
        with phase("image forward"):
            image = backbone.encode_image(images, with_tokens=True)
        with phase("GASS scoring"):
            scores = token_scores(backbone, image.cls, tokens, cfg.scoring)
        with phase("dual masking"):
            noise, info = dual_masking(tokens, scores, cfg.masking)
        with phase("text forward (2 views)"):
            text = backbone.encode_text(torch.cat([noise.tokens, info.tokens]), with_tokens=True)
        with phase("losses (SDM + MTP decoder)"):
            n = tokens.shape[0]
            logits = model.mtp(text.tokens[n:], image.tokens, positions=info.selected)
            contrast = sdm_loss(image.cls, text.eot[:n], pids, cfg.loss.temperature)
            loss = contrast + cfg.loss.mtp_weight * masked_token_loss(logits, info.labels[info.selected])
    with phase("backward"):
        loss.backward()
    model.zero_grad(set_to_none=True)
    return times


def run_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    variants, cfg = build_variants(name, device)
    backbone = variants["gadms"].backbone
    batch_size = args.batch or (32 if name == "tiny" else 4)
    batch = make_batch(backbone, batch_size, device)
    use_bf16 = args.dtype == "bf16"

    def autocast():
        if not use_bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    params = {p for m in variants.values() for p in m.parameters() if p.requires_grad}
    optimizer = torch.optim.Adam(list(params), lr=1e-7, eps=1e-3)  # tiny lr: the model barely moves
    reps = args.reps or (10 if name == "tiny" or device.type == "cuda" else 3)
    for _ in range(args.warmup):
        for objective in OBJECTIVES:
            timed_step(variants[objective], optimizer, batch, device, autocast)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    forward_backward: dict[str, list[float]] = {o: [] for o in OBJECTIVES}
    update: dict[str, list[float]] = {o: [] for o in OBJECTIVES}
    peak_memory: dict[str, float] = {}
    phases = []
    for _ in range(reps):
        for objective in OBJECTIVES:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            fb, up = timed_step(variants[objective], optimizer, batch, device, autocast)
            forward_backward[objective].append(fb)
            update[objective].append(up)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) / 2**30
                peak_memory[objective] = max(peak_memory.get(objective, 0.0), peak)
        # The phase breakdown runs in the same rounds, so load changes hit it like the steps.
        phases.append(gadms_phases(variants["gadms"], batch, device, autocast))
    median_phases = {k: statistics.median(p[k] for p in phases) for k in phases[0]}

    step = {o: statistics.median(forward_backward[o]) + statistics.median(update[o]) for o in OBJECTIVES}
    result: dict[str, Any] = {
        "model": name,
        "batch": batch_size,
        "image_size": list(backbone.image_size),
        "scored_layers": cfg.scoring.layers,
        "repetitions": reps,
        "step_seconds": step,
        "forward_backward_seconds": {o: statistics.median(forward_backward[o]) for o in OBJECTIVES},
        "samples_per_second": {o: batch_size / step[o] for o in OBJECTIVES},
        "ratio_gadms_to_irra": step["gadms"] / step["irra"],
        "ratio_gadms_to_sdm": step["gadms"] / step["sdm"],
        "ratio_gadms_to_irra_forward_backward": statistics.median(forward_backward["gadms"])
        / statistics.median(forward_backward["irra"]),
        "gadms_phases_seconds": median_phases,
        "forward_backward_all_seconds": forward_backward,  # every repetition, for the spread
    }
    if peak_memory:
        result["peak_memory_gib"] = peak_memory
    return result


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"== {r['model']}  batch {r['batch']}  image {r['image_size'][0]}x{r['image_size'][1]}  "
        f"L={r['scored_layers']}  median of {r['repetitions']}",
        f"{'variant':<8}{'step s':>10}{'fwd+bwd s':>11}{'samples/s':>11}",
    ]
    for o in OBJECTIVES:
        runs = r["forward_backward_all_seconds"][o]
        lines.append(
            f"{o:<8}{r['step_seconds'][o]:>10.4f}{r['forward_backward_seconds'][o]:>11.4f}"
            f"{r['samples_per_second'][o]:>11.1f}   fwd+bwd range {min(runs):.4f}-{max(runs):.4f}"
        )
    lines.append(
        f"GA-DMS / IRRA-style = {r['ratio_gadms_to_irra']:.3f}x "
        f"(fwd+bwd only {r['ratio_gadms_to_irra_forward_backward']:.3f}x); "
        f"GA-DMS / SDM-only = {r['ratio_gadms_to_sdm']:.3f}x"
    )
    total = sum(r["gadms_phases_seconds"].values())
    lines.append("GA-DMS phases (fwd+bwd, no optimizer):")
    for phase, seconds in r["gadms_phases_seconds"].items():
        lines.append(f"  {phase:<28}{seconds:>9.4f} s {100 * seconds / total:>6.1f} %")
    if "peak_memory_gib" in r:
        memory = ", ".join(f"{k} {v:.1f}" for k, v in r["peak_memory_gib"].items())
        lines.append(f"peak GPU memory GiB: {memory}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,vit-b-16", help="comma list of: " + ", ".join(MODELS))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    parser.add_argument("--batch", type=int, default=None, help="default: 32 tiny, 4 ViT-B-16")
    parser.add_argument("--reps", type=int, default=None, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="outputs/benchmarks", help="results folder")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cpu_name = platform.processor() or "cpu"
    environment = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
    }
    print(f"# bench_step on {environment['device']} ({args.device}, {args.dtype}, torch {torch.__version__}, "
          f"{environment['threads']} threads)")
    results = []
    for name in args.models.split(","):
        result = run_model(name.strip(), args, device)
        results.append(result)
        print(format_result(result), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_step-{args.device}-{args.dtype}.json"
    path.write_text(json.dumps({"environment": environment, "results": results}, indent=2))
    print(f"# written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
