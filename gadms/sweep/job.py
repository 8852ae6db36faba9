"""The sweep driver: check everything, start or resume the Ray Tune experiment, write the report.

Each trial is one GA-DMS training run of `gadms.train` (the Ray Train V2 pattern): a Tune function
(`run_trial`) builds the training job's TorchTrainer with Ray Train's Tune report callback, so every
report of the worker loop (`gadms.train.loop`) reaches Tune, and the scheduler sees the validation
score (`val_score`: the mean over `eval.benchmarks` of the sweep's metric) at every epoch end.
Trials' training runs live under `<storage_path>/<experiment>/runs/<trial id>`; the Tune experiment
under `<storage_path>/<experiment>`. Rerunning the same command continues an interrupted sweep with
`Tuner.restore`: finished trials are kept, unfinished ones restart and their training run resumes
from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from gadms import storage
from gadms.config import load_config
from gadms.errors import UserError
from gadms.sweep.config import SweepConfig
from gadms.sweep.space import Dimension, apply_knobs, resolve_space, tune_domains
from gadms.train.config import TrainJobConfig
from gadms.train.loop import SCORE_KEY

log = logging.getLogger("gadms.sweep")
SWEEP_CONFIG_FILE = "sweep_config.json"  # what the experiment was started with; a rerun must match it


@dataclass(frozen=True)
class SweepPlan:
    cfg: SweepConfig
    trial_base: TrainJobConfig  # what every trial runs, before its knob values
    best_base: TrainJobConfig  # the base of the best-config file: without trial_overrides
    dimensions: list[Dimension]
    experiment_uri: str

    @property
    def epochs(self) -> int:
        return self.trial_base.optim.epochs


def plan_sweep(cfg: SweepConfig) -> SweepPlan:
    """Load the base training config and check the search space (no Ray, no data read)."""
    best_base = load_config(TrainJobConfig, cfg.train.config, cfg.train.overrides)
    experiment_uri = storage.join(cfg.storage_path, cfg.experiment)
    forced = [
        f"eval.select_metric={cfg.metric}",
        "eval.every_epochs=1",  # the scheduler compares trials at epoch ends
        "eval.test_at_end=false",  # a sweep selects on validation; test stays untouched
        f"run.storage_path={absolute(storage.join(experiment_uri, 'runs'))}",
        f"scaling.num_workers={cfg.resources.workers}",
        f"scaling.cpus_per_worker={cfg.resources.cpus_per_worker}",
        f"scaling.use_gpu={str(cfg.resources.gpus_per_worker > 0).lower()}",
    ]
    overrides = [*cfg.train.overrides, *cfg.train.trial_overrides, *forced]
    trial_base = load_config(TrainJobConfig, cfg.train.config, overrides)
    if not trial_base.eval.benchmarks:
        raise UserError("train: eval.benchmarks is empty: a sweep needs a benchmark with a validation split")
    trial_base = with_absolute_paths(trial_base)
    dimensions = resolve_space(cfg.space, trial_base, cfg.search.algorithm)
    return SweepPlan(cfg, trial_base, best_base, dimensions, experiment_uri)


def absolute(uri: str) -> str:
    return uri if storage.is_s3(uri) or os.path.isabs(uri) else os.path.abspath(uri)


def with_absolute_paths(cfg: TrainJobConfig) -> TrainJobConfig:
    """Trials run in other processes and folders: local relative paths become absolute."""
    data = cfg.model_dump(mode="json")
    data["data"]["uri"] = absolute(data["data"]["uri"])
    data["eval"]["benchmarks"] = [absolute(b) for b in data["eval"]["benchmarks"]]
    pretrained = data["model"]["backbone"].get("pretrained")
    if isinstance(pretrained, str) and os.path.exists(pretrained):
        data["model"]["backbone"]["pretrained"] = os.path.abspath(pretrained)
    return TrainJobConfig.model_validate(data)


def check_inputs(plan: SweepPlan) -> None:
    """What the training job checks before its workers start (`plan_run`), once for the whole
    sweep, with the largest L searched (the model must have that many text layers)."""
    from gadms.train.job import plan_run

    layers = [v for d in plan.dimensions if d.knob == "model.scoring.layers" for v in d.values]
    largest = {"model.scoring.layers": max(layers or [plan.trial_base.model.scoring.layers])}
    plan_run(TrainJobConfig.model_validate(apply_knobs(plan.trial_base.model_dump(mode="json"), largest)))


def check_same_experiment(plan: SweepPlan) -> bool:
    """Record the config of a new experiment; on a rerun, refuse a different one. True: a rerun."""
    uri = storage.join(plan.experiment_uri, SWEEP_CONFIG_FILE)
    current = plan.cfg.model_dump(mode="json")
    if storage.exists(uri):
        saved = json.loads(storage.read_bytes(uri))
        if saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise UserError(
                f"experiment {plan.cfg.experiment} at {plan.experiment_uri} was started with another config "
                f"(differs in: {', '.join(changed)}); rerun it with its own config or choose a new experiment"
            )
        return True
    storage.write_bytes_atomic(uri, json.dumps(current, indent=1).encode())
    return False


def concurrency(cfg: SweepConfig, cluster: dict[str, float]) -> int:
    """The config's limit, capped by how many trials' workers the cluster holds at once."""
    limit = cfg.max_concurrent_trials
    if not cfg.limit_to_cluster:
        return limit
    res = cfg.resources
    cpus = res.workers * res.cpus_per_worker + res.driver_cpus
    gpus = res.workers * res.gpus_per_worker
    if cpus > 0:
        limit = min(limit, max(1, int(cluster.get("CPU", 0) // cpus)))
    if gpus > 0:
        limit = min(limit, max(1, int(cluster.get("GPU", 0) // gpus)))
    return limit


def build_tuner(plan: SweepPlan) -> Any:
    """A fresh Tuner, or the interrupted experiment's Tuner restored (same trials, scheduler state)."""
    import ray
    from ray import tune

    from gadms.sweep.trial import run_trial, trial_dirname

    cfg = plan.cfg
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            setup={"base": plan.trial_base.model_dump(mode="json"), "gpus": cfg.resources.gpus_per_worker},
        ),
        {"CPU": cfg.resources.driver_cpus},
    )
    filesystem, experiment_path = storage.resolve(plan.experiment_uri)
    if tune.Tuner.can_restore(experiment_path, storage_filesystem=filesystem):
        log.info("resuming sweep %s from %s (finished trials are kept)", cfg.experiment, plan.experiment_uri)
        return tune.Tuner.restore(
            experiment_path, trainable=trainable, resume_unfinished=True, resume_errored=True,
            storage_filesystem=filesystem,
        )
    limit = concurrency(cfg, ray.cluster_resources())
    log.info(
        "sweep %s: %d sample(s) of %s, metric val %s, %s scheduler, %s search, %d trial(s) at a time; at %s",
        cfg.experiment, cfg.num_samples, ", ".join(d.symbol for d in plan.dimensions), cfg.metric,
        cfg.scheduler.type, cfg.search.algorithm, limit, plan.experiment_uri,
    )
    _, storage_path = storage.resolve(cfg.storage_path)
    return tune.Tuner(
        trainable,
        param_space=tune_domains(plan.dimensions),
        tune_config=tune.TuneConfig(
            metric=SCORE_KEY, mode="max", scheduler=trial_scheduler(plan), search_alg=_search(plan, limit),
            num_samples=cfg.num_samples, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=cfg.experiment, storage_path=storage_path, storage_filesystem=filesystem,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures), verbose=1,
        ),
    )


def trial_scheduler(plan: SweepPlan) -> Any:
    """ASHA over epochs (what the worker loop reports as `epoch`), or FIFO (every trial runs to the end)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = plan.cfg.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    max_t = s.max_t or plan.epochs
    return ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=min(s.grace_period, max_t),
                         reduction_factor=s.reduction_factor)


def _search(plan: SweepPlan, limit: int) -> Any:
    """The search algorithm, limited to `limit` trials at a time."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    search = plan.cfg.search
    if search.algorithm == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(sampler=optuna.samplers.TPESampler(seed=search.seed)), limit)
    return BasicVariantGenerator(max_concurrent=limit, random_state=search.seed)


def run_sweep(plan: SweepPlan) -> dict[str, str]:
    """Run (or resume) a checked sweep on the connected Ray cluster, then write its report."""
    from gadms.sweep.report import collect_rows, write_report

    check_same_experiment(plan)
    results = build_tuner(plan).fit()
    rows = collect_rows(results, plan)
    return write_report(rows, plan)
