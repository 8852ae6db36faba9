"""Rows per second of each WebPerson pipeline stage on this machine, one process (so: per core).

Stages run as the plain Python functions the Ray job wraps, over synthetic street scenes served by
the local test web server: download (loopback HTTP, N threads), ordered dedup registry, safe decode
(ratio against a bare PIL decode of the same bytes), detection (precomputed, and torchvision Keypoint
R-CNN with random weights at its default 800 px: the cost of the permissive detector on a CPU), pose
and crop, the MLLM filter and captions with the tiny smoke model (transformers backend), and caption
checks. Writes outputs/benchmarks/bench_pipeline.json and prints a table.

    python benchmarks/bench_pipeline.py [--scenes 48] [--rcnn-images 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from gadms.synth.attributes import sample_identity  # noqa: E402
from gadms.synth.config import WebPolicy  # noqa: E402
from gadms.synth.scenes import render_scene  # noqa: E402
from gadms.synth.web_files import encode_variant  # noqa: E402
from gadms.synth.world import stream_rng  # noqa: E402
from gadms.testing.http_server import MisbehavingHTTPServer  # noqa: E402
from pipelines.dataset.config import CaptionCheckConfig, DecodeConfig, DetectConfig, DownloadConfig, PoseConfig  # noqa: E402
from pipelines.dataset.config import CaptionConfig, FilterConfig, MLLMConfig  # noqa: E402
from pipelines.dataset.detect import PrecomputedDetector, TorchvisionDetector  # noqa: E402
from pipelines.dataset.records import OK, url_digest  # noqa: E402
from pipelines.dataset.smoke_model import ensure_smoke_model  # noqa: E402
from pipelines.dataset.stages import (  # noqa: E402
    Registry, caption_rows, check_rows, decode_rows, detect_rows, download_rows, filter_rows, pose_rows,
)
from pipelines.dataset.templates import load_bank  # noqa: E402

OUT = Path("outputs/benchmarks/bench_pipeline.json")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=48)
    parser.add_argument("--rcnn-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one core: the numbers are per core
    rng = stream_rng(0, "bench")
    folder = Path(tempfile.mkdtemp(prefix="bench-web-"))
    persons = []
    for i in range(args.scenes):
        image, people = render_scene(rng, [sample_identity(stream_rng(0, "bp", i, j), j) for j in range(4)], "people", WebPolicy())
        (folder / f"s{i}.jpg").write_bytes(encode_variant(image, "jpeg")[0])
        persons.append(json.dumps([{**p.to_dict(), "score": 0.99} for p in people]))
    results: dict[str, dict] = {}

    def record(stage: str, rows: int, seconds: float, **extra) -> None:
        results[stage] = {"rows": rows, "seconds": round(seconds, 4), "rows_per_s": round(rows / seconds, 2), **extra}

    with MisbehavingHTTPServer(folder) as server:
        rows = [{"id": str(i), "url": server.url(f"/s{i}.jpg"), "url_sha": url_digest(server.url(f"/s{i}.jpg")),
                 "status": OK, "body": None, "persons": persons[i]} for i in range(args.scenes)]  # fmt: skip
        rows, seconds = timed(download_rows, rows, DownloadConfig(allow_loopback=True, threads=args.threads))
        record("download", len(rows), seconds, threads=args.threads, note="loopback server: client cost, not network")
    rows, seconds = timed(Registry("content"), rows)
    record("dedup_content", len(rows), seconds)
    bodies = [r["body"] for r in rows]
    _, plain = timed(lambda: [Image.open(io.BytesIO(b)).convert("RGB").load() for b in bodies])
    rows, seconds = timed(decode_rows, rows, DecodeConfig())
    record("decode", len(rows), seconds, ratio_to_plain_pil=round(seconds / plain, 2))
    rows, seconds = timed(detect_rows, rows, PrecomputedDetector(DetectConfig(backend="precomputed"), "persons"), DetectConfig())
    record("detect_precomputed", len(rows), seconds)
    n = min(args.rcnn_images, len(rows))
    rcnn = TorchvisionDetector(DetectConfig(random_init=True))
    sample = [dict(r) for r in rows[:n]]
    _, seconds = timed(detect_rows, sample, rcnn, DetectConfig())
    record("detect_keypointrcnn_random", n, seconds, note="ResNet-50-FPN at 800 px, CPU, 1 thread")
    crops, seconds = timed(pose_rows, rows, PoseConfig())
    record("pose_and_crop", len(rows), seconds, crops=len(crops))
    model = ensure_smoke_model(Path("outputs/models/smoke-vlm"))
    from pipelines.dataset.mllm import TransformersMLLM

    mllm_cfg = MLLMConfig(backend="transformers", model=str(model), generation_batch_size=1, image_max_side=64)
    backend = TransformersMLLM(mllm_cfg)
    crops = [c for c in crops if c["status"] == OK]
    crops, seconds = timed(filter_rows, crops, backend, mllm_cfg, FilterConfig())
    record("mllm_filter_smoke_model", len(crops), seconds, note="0.3M-parameter tiny LLaVA, not a real MLLM")
    live = [c for c in crops if c["status"] == OK]
    live, seconds = timed(caption_rows, live, backend, load_bank("pipelines/templates/bank.jsonl"), mllm_cfg, CaptionConfig())
    record("caption_smoke_model", len(live), seconds, captions=2 * len(live))
    checked, seconds = timed(check_rows, [dict(c) for c in live] * 20, CaptionCheckConfig())
    record("caption_check", len(checked), seconds)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch_threads": 1},
              "scenes": args.scenes, "stages": results}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    print(f"{'stage':32s} {'rows':>6s} {'seconds':>9s} {'rows/s':>9s}  extra")
    for stage, r in results.items():
        extra = {k: v for k, v in r.items() if k not in ("rows", "seconds", "rows_per_s")}
        print(f"{stage:32s} {r['rows']:6d} {r['seconds']:9.3f} {r['rows_per_s']:9.1f}  {extra or ''}")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
