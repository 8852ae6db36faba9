"""How fast the synthetic person renderer is, on one core.

    python benchmarks/bench_synth_render.py [--images 2000] [--height 128 --width 64]

Reports crops per second for rendering alone (pose, background, person, occluder, camera effects)
and for rendering plus JPEG encoding, at the given size and at 384x128. The issue's target is at
least 200 images/s on one core at 128x64. Run it on an idle machine: the number scales with CPU speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from gadms.synth.attributes import sample_identities
from gadms.synth.crops import encode_image, render_crop, sample_view


def measure(people: list, n: int, height: int, width: int, encode: bool) -> float:
    start = time.perf_counter()
    for k in range(n):
        rng = np.random.default_rng([7, k])
        image, _ = render_crop(people[k % len(people)], sample_view(rng), height, width, rng)
        if encode:
            encode_image(image, "JPEG", 90)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core, as the target says
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    people = sample_identities(np.random.default_rng(0), 100)
    measure(people, 50, args.height, args.width, False)  # warm-up (imports, caches)
    size = f"{args.height}x{args.width}"
    large = max(200, args.images // 4)
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "images": args.images,
        f"render_{size}_per_s": round(measure(people, args.images, args.height, args.width, False), 1),
        f"render_jpeg_{size}_per_s": round(measure(people, args.images, args.height, args.width, True), 1),
        "render_384x128_per_s": round(measure(people, large, 384, 128, False), 1),
        "render_jpeg_384x128_per_s": round(measure(people, large, 384, 128, True), 1),
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
