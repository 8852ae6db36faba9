"""Retrieval metrics on an ICFG-PEDES-sized problem (19,848 x 19,848): time and peak memory.

Compares `gadms.metrics.retrieval_metrics` (query chunks, match ranks by sorted values) with the
textbook computation that argsorts the whole matrix at once (as IRRA's evaluation does). Each
method runs in its own process, which builds the same float32 similarity matrix first (1.5 GiB at
the default size); peak memory is the process's maximum resident set, and "extra" is that peak
minus the resident set just before the metric is called (i.e. what the metric itself adds).

    python benchmarks/bench_metrics.py [--n 19848] [--ids 1000] [--skip-naive]

Results are printed and written to outputs/benchmarks/bench_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


NOISE = 2.2  # noise norm relative to the identity centre (gives R1 of roughly 60-70 %)


def problem(n: int, ids: int, dim: int = 256, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """n captions vs n images of `ids` people; features = identity centre + noise (CLIP-like)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(ids, dim, generator=generator), dim=1)
    gallery_pids = torch.arange(n) % ids
    query_pids = gallery_pids[torch.randperm(n, generator=generator)]
    def features(pids: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(len(pids), dim, generator=generator) * (NOISE / dim**0.5)
        return torch.nn.functional.normalize(centres[pids] + noise, dim=1)

    return features(query_pids) @ features(gallery_pids).T, query_pids, gallery_pids


def naive_full_argsort(
    similarity: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor
) -> dict[str, float]:
    """IRRA-style: argsort every row of the full matrix, then cumulative sums over full rows."""
    indices = torch.argsort(similarity, dim=1, descending=True)
    matches = gallery_pids[indices].eq(query_pids.view(-1, 1))
    del indices
    cmc = matches[:, :10].cumsum(1)
    ranks = {f"R{k}": float((cmc[:, k - 1] > 0).float().mean() * 100) for k in (1, 5, 10)}
    n_match = matches.sum(1)
    positions = torch.arange(1, matches.shape[1] + 1)
    hits = matches.cumsum(1)
    precision = hits / positions
    ap = (precision * matches).sum(1) / n_match
    last = matches.shape[1] - matches.flip(1).int().argmax(1)
    inp = n_match / last
    return {**ranks, "mAP": float(ap.mean() * 100), "mINP": float(inp.mean() * 100)}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def worker(method: str, n: int, ids: int) -> dict:
    from gadms.metrics import retrieval_metrics

    similarity, query_pids, gallery_pids = problem(n, ids)
    before = rss_mib()
    start = time.perf_counter()
    if method == "chunked":
        metrics = retrieval_metrics(similarity, query_pids, gallery_pids)
    else:
        metrics = naive_full_argsort(similarity, query_pids, gallery_pids)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"method": method, "seconds": seconds, "peak_rss_mib": peak, "rss_before_mib": before,
            "extra_mib": peak - before, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=19848, help="queries = gallery size")
    parser.add_argument("--ids", type=int, default=1000, help="distinct person ids")
    parser.add_argument("--skip-naive", action="store_true", help="only the chunked implementation")
    parser.add_argument("--worker", choices=["chunked", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default="outputs/benchmarks", help="results folder")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.ids)))
        return 0
    methods = ["chunked"] + ([] if args.skip_naive else ["naive"])
    print(f"# bench_metrics: {args.n} x {args.n}, {args.ids} ids, float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}")
    results = []
    for method in methods:
        command = [sys.executable, __file__, "--worker", method, "--n", str(args.n), "--ids", str(args.ids)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{method}: failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            results.append({"method": method, "error": done.stderr[-2000:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        m = result["metrics"]
        print(f"{method:<8} {result['seconds']:8.1f} s   peak RSS {result['peak_rss_mib'] / 1024:6.2f} GiB   "
              f"extra {result['extra_mib'] / 1024:6.2f} GiB   "
              + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    ok = [r for r in results if "metrics" in r]
    if len(ok) == 2:
        diff = max(abs(ok[0]["metrics"][k] - ok[1]["metrics"][k]) for k in ok[0]["metrics"])
        print(f"max |difference| between the two: {diff:.2e} percentage points "
              f"(ties may be ordered differently: the naive argsort has no tie rule)")
        print(f"speed-up {ok[1]['seconds'] / ok[0]['seconds']:.1f}x, extra memory "
              f"{ok[1]['extra_mib'] / max(ok[0]['extra_mib'], 1):.1f}x less")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_metrics.json"
    path.write_text(json.dumps({"n": args.n, "ids": args.ids, "results": results}, indent=2))
    print(f"# written to {path}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
