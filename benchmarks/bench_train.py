"""Training throughput of a run: samples/s per worker and the fraction of time workers waited for data.

    python benchmarks/bench_train.py --run outputs/runs/demo            # summarise a finished run
    python benchmarks/bench_train.py --config configs/train/demo.yaml   # train it first, then summarise

Reads the metric history that travels in the run's latest checkpoint (one entry per log window of
`run.log_every_steps`), skips the first window of every epoch (pipeline start-up) and reports the
median and the whole-run figures, so the Ray Data pipeline's cost is visible next to the step's.
"""

from __future__ import annotations

import argparse
import json
import statistics

from gadms import storage
from gadms.config import load_config
from gadms.train.job import latest_checkpoint, plan_run, run_training
from gadms.train.config import TrainJobConfig
from gadms.train.loop import HISTORY_FILE


def summarise(run_uri: str) -> dict[str, float]:
    checkpoint = latest_checkpoint(run_uri)
    if checkpoint is None:
        raise SystemExit(f"error: {run_uri}: no checkpoint, so no history")
    history = json.loads(storage.read_bytes(storage.join(checkpoint, HISTORY_FILE)))
    windows = [e for e in history if "samples_per_s" in e]
    steady = [e for i, e in enumerate(windows) if i and windows[i - 1]["epoch"] == e["epoch"]]
    steady = steady or windows
    return {
        "log windows": len(windows),
        "median samples/s/worker": statistics.median(e["samples_per_s"] for e in steady),
        "median data-wait fraction": statistics.median(e["data_wait_frac"] for e in steady),
        "mean data-wait fraction (all windows)": statistics.fmean(e["data_wait_frac"] for e in windows),
        "skipped rows": sum(e.get("skipped_rows", 0.0) for e in windows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a run folder (local or s3://) to summarise")
    parser.add_argument("--config", help="train this config first (local Ray), then summarise it")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run_uri = args.run
    if args.config:
        import ray

        cfg = load_config(TrainJobConfig, args.config, args.overrides)
        plan = plan_run(cfg)
        ray.init(configure_logging=False)
        run_uri = run_training(cfg, plan).run_uri
    if not run_uri:
        parser.error("give --run or --config")
    for key, value in summarise(run_uri).items():
        print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")


if __name__ == "__main__":
    main()
