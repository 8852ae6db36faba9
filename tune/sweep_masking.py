"""`python tune/sweep_masking.py --config configs/tune/masking.yaml [key=value ...]`

A Ray Tune sweep of GA-DMS's mask ratios and loss weights; each trial is a `gadms.train` run (the
library is `gadms.sweep`). Runs on the Ray cluster it finds (RAY_ADDRESS, or inside `ray job
submit`), else starts a local Ray instance. Rerunning the same command (same experiment and
storage_path) resumes an interrupted sweep; on a finished one it only rewrites the report.
"""

from __future__ import annotations

from gadms.cli import config_arg_parser, run_main
from gadms.config import load_config
from gadms.sweep.config import SweepConfig


def main(argv: list[str] | None = None) -> int:
    parser = config_arg_parser("Ray Tune sweep of GA-DMS masking and loss knobs.", "configs/tune/smoke.yaml")
    args = parser.parse_args(argv)
    cfg = load_config(SweepConfig, args.config, args.overrides)
    from gadms.sweep.job import check_inputs, plan_sweep, run_sweep

    plan = plan_sweep(cfg)  # the search space and every input are checked before Ray starts
    check_inputs(plan)
    import ray

    if not ray.is_initialized():
        ray.init(configure_logging=False)
    run_sweep(plan)
    return 0


if __name__ == "__main__":
    run_main(main)
