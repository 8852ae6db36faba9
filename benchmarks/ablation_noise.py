"""GA-DMS against plain SDM (the sdm_only ablation) on noisy synthetic captions, over several seeds.

    python benchmarks/ablation_noise.py --out outputs/ablation [--seeds 0 1 2] [--noise-rate 0.3]

What it does, all with the training job's own code (`gadms.train.job.run_training`, one Ray instance):
1. a synthetic world (configs/synth/demo.yaml with caption noise at --noise-rate) to train on and to
   test on (CUHK-PEDES format, clean captions), and a held-out noisy WebPerson set (another seed)
   whose injected noise tokens are known;
2. the stand-in CLIP (configs/train/tiny_clip.yaml) once: both methods start from it, as both start
   from OpenAI's CLIP in the paper;
3. per seed, configs/train/demo.yaml twice, identical except `model.objective`: gadms, and sdm (plain
   SDM on the noisy captions, no scoring, no masking, no MTP);
4. per trained model (and the stand-in as a reference): test R1/mAP/mINP, and how well 1 - the
   model's GASS token score finds the noise tokens among the word tokens of the held-out captions
   (AUROC, 0.5 = chance; `gadms.metrics.binary_auroc`). Scores come from the same GASS computation
   for every model, so the AUROC measures what training did to the model, not a different scorer.
Writes <out>/results.csv (one row per run) and <out>/results.md (mean and std per method) and prints
the table. Finished runs are reused on a rerun (their summary.json exists).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gadms import storage  # noqa: E402
from gadms.augment import AugmentConfig, eval_transform  # noqa: E402
from gadms.config import load_config  # noqa: E402
from gadms.data.webperson import read_webperson  # noqa: E402
from gadms.metrics import binary_auroc  # noqa: E402
from gadms.step import GADMSModel  # noqa: E402
from gadms.synth.config import load_synth_config  # noqa: E402
from gadms.synth.generate import generate_world  # noqa: E402
from gadms.tokenizer import caption_tokenizer, maskable_mask  # noqa: E402
from gadms.train.config import TrainJobConfig  # noqa: E402
from gadms.train.job import plan_run, run_training  # noqa: E402

METHODS = {"GA-DMS": "gadms", "sdm_only": "sdm"}
HELD_OUT_SEED = 1000
HELD_OUT_IDS = 120
COLUMNS = ["method", "seed", "R1", "mAP", "mINP", "noise_auroc", "steps"]


def make_worlds(out: Path, noise_rate: float) -> tuple[Path, Path]:
    world, held_out = out / "world", out / "held-out"
    if not (world / "synth_manifest.json").exists():
        generate_world(load_synth_config("demo", overrides=[f"noise.rate={noise_rate}", "web.enabled=false"]),
                       str(world), overwrite=True)  # fmt: skip
    if not (held_out / "synth_manifest.json").exists():
        parts_off = [f"{part}.enabled=false" for part in ("cuhk", "icfg", "rstp", "web", "contact_sheet")]
        cfg = load_synth_config("demo", overrides=[
            f"seed={HELD_OUT_SEED}", f"noise.rate={noise_rate}", f"webperson.ids={HELD_OUT_IDS}", *parts_off])
        generate_world(cfg, str(held_out), overwrite=True)
    return world, held_out


def train(recipe: str, world: Path, runs: Path, name: str, *overrides: str) -> dict:
    """One training run of `recipe` on `world` (reused when already finished)."""
    summary_path = runs / name / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    cfg = load_config(TrainJobConfig, REPO / "configs/train" / recipe, [
        f"data.uri={world}/webperson", f"eval.benchmarks=[{world}/CUHK-PEDES]",
        f"run.storage_path={runs}", f"run.name={name}", *overrides])  # fmt: skip
    return run_training(cfg, plan_run(cfg)).summary


def noise_auroc(model: GADMSModel, held_out: Path, batch_size: int = 64) -> float:
    """AUROC of 1 - GASS score for injected noise tokens against the other word tokens."""
    table = read_webperson(str(held_out / "webperson"))
    transform = eval_transform(model.backbone.image_size, AugmentConfig())  # mean/std only
    tokenizer = caption_tokenizer(model.backbone.context_length)
    detect, is_noise = [], []
    model.eval()
    for caption, positions in (("caption1", "caption1_noise_positions"), ("caption2", "caption2_noise_positions")):
        for start in range(0, table.num_rows, batch_size):
            rows = table.slice(start, batch_size)
            images = torch.stack([transform(load_rgb(b)) for b in rows.column("image").to_pylist()])
            tokens = tokenizer(rows.column(caption).to_pylist())
            scores = model.token_scores(images, tokens)
            noise = torch.zeros_like(tokens, dtype=torch.bool)
            for i, noisy in enumerate(rows.column(positions).to_pylist()):
                noise[i, [p for p in noisy if p < tokens.shape[1]]] = True
            words = maskable_mask(tokens)
            detect.append((1.0 - scores)[words])
            is_noise.append(noise[words])
    return binary_auroc(torch.cat(detect), torch.cat(is_noise))


def load_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def trained_model(summary: dict, recipe: str = "demo.yaml") -> GADMSModel:
    """The run's exported weights in the recipe's model (GASS scoring settings included)."""
    cfg = load_config(TrainJobConfig, REPO / "configs/train" / recipe, [
        "data.uri=unused", f"model.backbone.pretrained={summary['model']}", "model.objective=gadms"])
    return GADMSModel(cfg.model)


def row(method: str, seed: int | str, summary: dict, held_out: Path) -> dict:
    test = next(iter(summary["test"].values()))
    auroc = noise_auroc(trained_model(summary), held_out)
    return {"method": method, "seed": seed, "R1": test["R1"], "mAP": test["mAP"], "mINP": test["mINP"],
            "noise_auroc": 100.0 * auroc, "steps": summary["steps"]}  # fmt: skip


def markdown(rows: list[dict], chance: dict) -> str:
    lines = ["| method | runs | test R1 | test mAP | test mINP | noise-token AUROC (1 - score) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]

        def cell(key: str) -> str:
            values = [float(r[key]) for r in mine]
            spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            return f"{statistics.mean(values):.2f}{spread}"

        lines.append(f"| {method} | {len(mine)} | {cell('R1')} | {cell('mAP')} | {cell('mINP')} | {cell('noise_auroc')} |")
    lines.append(f"| chance | | {chance['R1']:.2f} | {chance['mAP']:.2f} | | 50.00 |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs/ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise-rate", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=None, help="override the demo recipe's epochs")
    args = parser.parse_args()
    if not 0 < args.noise_rate <= 1:
        raise SystemExit(f"error: --noise-rate {args.noise_rate}: must be in (0, 1]")
    import ray

    from gadms.cli import setup_logging

    setup_logging(only="gadms")
    out = args.out.resolve()
    world, held_out = make_worlds(out, args.noise_rate)
    runs = out / "runs"
    ray.init(configure_logging=False)
    stand_in = train("tiny_clip.yaml", world, runs, "stand-in-clip")
    rows = [row("stand-in CLIP (start)", "-", stand_in, held_out)]
    epochs = [f"optim.epochs={args.epochs}"] if args.epochs else []
    for seed in args.seeds:
        for method, objective in METHODS.items():
            summary = train("demo.yaml", world, runs, f"{objective}-seed{seed}", f"model.objective={objective}",
                            f"seed={seed}", f"model.backbone.pretrained={stand_in['model']}", *epochs)  # fmt: skip
            rows.append(row(method, seed, summary, held_out))
            print(json.dumps(rows[-1]), flush=True)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    chance = next(iter(stand_in["test"].values()))["chance"]
    table = markdown(rows, chance)
    (out / "results.md").write_text(table)
    print(f"\nnoise rate {args.noise_rate}, seeds {args.seeds}, world {storage.join(str(world), 'webperson')}\n{table}")
    print(f"written: {out / 'results.csv'}, {out / 'results.md'}")


if __name__ == "__main__":
    main()
