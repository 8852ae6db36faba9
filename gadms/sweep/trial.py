"""One trial: the training job of `gadms.train` with the trial's knob values, reporting to Ray Tune."""

from __future__ import annotations

from typing import Any

from gadms.sweep.space import apply_knobs
from gadms.train.config import TrainJobConfig


def trial_config(base: dict[str, Any], params: dict[str, Any], trial_id: str) -> TrainJobConfig:
    """The trial's training config: the base with its knob values, its run named after the trial."""
    data = apply_knobs(base, params)
    data["run"]["name"] = trial_id
    return TrainJobConfig.model_validate(data)


def run_trial(params: dict[str, Any], setup: dict[str, Any]) -> None:
    """A Tune function trainable that launches the training job's TorchTrainer (Ray Train V2 pattern).

    Every `ray.train.report` of the worker loop reaches Tune through TuneReportCallback. The run is
    named after the trial id, so a trial restarted by `Tuner.restore` (or after a failure) resumes
    its training run from the run's latest checkpoint instead of starting over.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gadms.cli import setup_logging
    from gadms.train.data import describe_source
    from gadms.train.job import build_trainer, epoch_steps

    setup_logging(only="gadms")  # inside a Ray actor: leave Ray's own loggers alone
    cfg = trial_config(setup["base"], params, tune.get_context().get_trial_id())
    # The sweep driver ran the job's full checks (plan_run) once for all trials; a trial only counts.
    source = describe_source(cfg.data)
    trainer = build_trainer(
        cfg, source, epoch_steps(cfg, source), callbacks=[TuneReportCallback()], gpus_per_worker=setup["gpus"] or 1.0
    )
    trainer.fit()


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Tune's default repeats every knob value)."""
    return f"trial_{trial.trial_id}"
