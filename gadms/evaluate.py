"""Text-to-image retrieval evaluation of a model on benchmark splits (REFERENCE.md metrics).

Library use: `evaluate_split(model, split)` encodes every caption (queries) and every image
(gallery) of a `BenchmarkSplit` with the dual encoder and returns R1/R5/R10/mAP/mINP in percent.
Command: zero-shot evaluation of any checkpoint (or of an untrained/pretrained CLIP config):

    python -m gadms.evaluate --checkpoint outputs/runs/NAME/checkpoint_... --benchmark DIR [--split test]
    python -m gadms.evaluate --config configs/train/pretrain.yaml --benchmark DIR   # its init weights

Images are read through `gadms.storage` (local or s3://) with a small thread pool, decoded,
resized and normalised exactly as validation during training does.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch
from PIL import Image

from gadms import storage
from gadms.augment import AugmentConfig, eval_transform
from gadms.checkpoint import load_checkpoint, read_meta
from gadms.cli import run_main, setup_logging
from gadms.config import load_config
from gadms.data.benchmarks import BenchmarkSplit, read_benchmark
from gadms.errors import UserError
from gadms.metrics import retrieval_metrics
from gadms.step import GADMSConfig, GADMSModel
from gadms.tokenizer import caption_tokenizer

log = logging.getLogger(__name__)
READ_THREADS = 8


def read_image(uri: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(storage.read_bytes(uri))) as image:
            return image.convert("RGB")
    except OSError as err:
        raise UserError(f"{uri}: cannot decode image ({err})") from None


@torch.no_grad()
def encode_split(
    model: GADMSModel,
    split: BenchmarkSplit,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    augment: AugmentConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(caption features `[n_captions, E]`, image features `[n_images, E]`), L2-normalised, on CPU."""
    model.eval()
    device = torch.device(device)
    transform = eval_transform(model.backbone.image_size, augment or AugmentConfig())
    tokenizer = caption_tokenizer(model.backbone.context_length)
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    texts, images = [], []
    with amp:
        for start in range(0, split.num_captions, batch_size):
            tokens = tokenizer(list(split.captions[start : start + batch_size])).to(device)
            texts.append(model.text_embeddings(tokens).float().cpu())
        with ThreadPoolExecutor(READ_THREADS) as pool:
            for start in range(0, split.num_images, batch_size):
                paths = split.image_paths[start : start + batch_size]
                batch = torch.stack([transform(im) for im in pool.map(read_image, paths)]).to(device)
                images.append(model.image_embeddings(batch).float().cpu())
    return torch.cat(texts), torch.cat(images)


def evaluate_split(model: GADMSModel, split: BenchmarkSplit, **encode_kwargs: Any) -> dict[str, float]:
    """Retrieval metrics of captions (queries) against images (gallery), matched by person id."""
    was_training = model.training
    text, image = encode_split(model, split, **encode_kwargs)
    model.train(was_training)
    metrics = retrieval_metrics(text @ image.T, split.caption_pids, split.image_pids)
    return {**metrics, "queries": float(split.num_captions), "gallery": float(split.num_images)}


def chance_metrics(split: BenchmarkSplit) -> dict[str, float]:
    """Expected R1 and mAP of a model that ranks the gallery at random (to read results against)."""
    counts = {pid: int((split.image_pids == pid).sum()) for pid in set(split.caption_pids.tolist())}
    n = split.num_images
    r1 = sum(counts[int(p)] for p in split.caption_pids) / (n * split.num_captions)
    # E[AP] for m relevant among n at random positions = (1/n) * (m-1)/(n-1) * ... ~ m/n (+ 1/n terms);
    # exactly: E[AP] = (1/m) * sum_k E[prec@k * rel_k] = (m - 1)/(n - 1) + (1 - (m - 1)/(n - 1)) * H_n / n.
    harmonic = sum(1.0 / k for k in range(1, n + 1))
    aps = []
    for p in split.caption_pids:
        m = counts[int(p)]
        q = (m - 1) / (n - 1) if n > 1 else 1.0
        aps.append(q + (1 - q) * harmonic / n)
    return {"R1": 100.0 * r1, "mAP": 100.0 * sum(aps) / len(aps)}


@contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local folder with the contents of `uri` (itself when local; a temporary copy from S3)."""
    if not storage.is_s3(uri):
        yield Path(storage.resolve(uri)[1])
        return
    fs, path = storage.resolve(uri)
    with tempfile.TemporaryDirectory(prefix="gadms-ckpt-") as tmp:
        pafs.copy_files(path, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        yield Path(tmp)


def model_from_checkpoint(directory: str | Path) -> GADMSModel:
    """The GA-DMS model saved in a training checkpoint (its config is stored with it)."""
    meta = read_meta(directory)
    if "model" not in meta.get("config", {}):
        raise UserError(f"{directory}: checkpoint carries no model config")
    data = meta["config"]["model"]
    data["backbone"]["pretrained"] = None  # the checkpoint has the weights
    cfg = GADMSConfig.model_validate(data)
    classifier = meta["parameter_shapes"].get("classifier.weight")
    model = GADMSModel(cfg, num_identities=classifier[0] if classifier else 0)
    load_checkpoint(directory, model, restore_rng=False)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Text-to-image retrieval metrics of a checkpoint.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="training checkpoint folder (local or s3://)")
    source.add_argument("--config", help="a training config: evaluate its model as initialised")
    parser.add_argument("--benchmark", action="append", required=True, help="benchmark root (repeatable)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the metrics as JSON here (local or s3://)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of --config")
    args = parser.parse_args(argv)
    setup_logging()

    if args.checkpoint:
        with local_copy(args.checkpoint) as folder:
            model = model_from_checkpoint(folder)
    else:
        from gadms.train.config import TrainJobConfig

        model = GADMSModel(load_config(TrainJobConfig, args.config, args.overrides).model)
        if model.cfg.backbone.pretrained is None:
            log.warning("backbone.pretrained is null: evaluating RANDOM weights")
    model.to(args.device)
    results: dict[str, Any] = {}
    for root in args.benchmark:
        split = read_benchmark(root).split(args.split)
        metrics = evaluate_split(model, split, batch_size=args.batch_size, device=args.device)
        results[split.benchmark] = {"split": args.split, **metrics, "chance": chance_metrics(split)}
        print(
            f"{split.benchmark} {args.split}: R1 {metrics['R1']:.2f}  R5 {metrics['R5']:.2f}  "
            f"R10 {metrics['R10']:.2f}  mAP {metrics['mAP']:.2f}  mINP {metrics['mINP']:.2f}  "
            f"({split.num_captions} queries, {split.num_images} images; chance R1 "
            f"{results[split.benchmark]['chance']['R1']:.2f})"
        )
    if args.out:
        storage.write_bytes_atomic(args.out, json.dumps(results, indent=1).encode())
    return 0


if __name__ == "__main__":
    run_main(main)
