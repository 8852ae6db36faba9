"""`python -m gadms.train --config configs/train/<recipe>.yaml [key=value ...]`

Runs on the Ray cluster it finds (RAY_ADDRESS, or inside `ray job submit`), else starts a local
Ray instance. Rerunning the same command (same run.name and run.storage_path) resumes the run.
"""

from __future__ import annotations

from gadms.cli import config_arg_parser, run_main
from gadms.config import load_config
from gadms.train.config import TrainJobConfig


def main(argv: list[str] | None = None) -> int:
    args = config_arg_parser("GA-DMS pretraining / fine-tuning on Ray Train.", "configs/train/smoke.yaml").parse_args(argv)
    cfg = load_config(TrainJobConfig, args.config, args.overrides)
    from gadms.train.job import plan_run, run_training

    plan = plan_run(cfg)  # every input checked before Ray starts
    import ray

    if not ray.is_initialized():
        ray.init(configure_logging=False)
    run_training(cfg, plan)
    return 0


if __name__ == "__main__":
    run_main(main)
