"""The driver of `python -m gadms.train`: check inputs, build the TorchTrainer, fit, test, report.

Everything that can be wrong with the inputs (config, data path, Parquet schema, benchmark files)
is checked here before any worker starts, so it fails in one line. The run lives at
`<run.storage_path>/<run.name>` (local or s3://); rerunning the same command resumes it from its
latest checkpoint. After training, the best checkpoint by VALIDATION score is evaluated on the
test splits in a separate Ray task (with a GPU when training had them); test never selects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gadms import storage
from gadms.data.benchmarks import read_benchmark
from gadms.errors import UserError
from gadms.step import GADMSModel
from gadms.train.config import TrainJobConfig
from gadms.checkpoint import META_FILE, MODEL_FILE, check_compatible
from gadms.train.data import TrainingSource, build_dataset, describe_source
from gadms.train.loop import HISTORY_FILE, SCORE_KEY, train_loop_per_worker
from gadms.train.report import read_history, summary_table, write_run_report

log = logging.getLogger("gadms.train")
RAY_CHECKPOINT_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of a run's checkpoints


@dataclass
class TrainOutcome:
    run_uri: str
    summary: dict[str, Any]
    written: dict[str, str]


def check_eval_benchmarks(cfg: TrainJobConfig) -> None:
    """Every benchmark must read; at least one must have the validation split (model selection)."""
    validated = []
    for root in cfg.eval.benchmarks:
        benchmark = read_benchmark(root)
        if cfg.eval.val_split in benchmark.splits:
            validated.append(benchmark.name)
        if cfg.eval.test_at_end:
            benchmark.split(cfg.eval.test_split)
    if cfg.eval.benchmarks and not validated:
        raise UserError(
            f"eval.benchmarks: none has a {cfg.eval.val_split!r} split, so no checkpoint could be "
            "selected without looking at test; add a benchmark with a validation split"
        )


def evaluate_best(checkpoint_path: str, benchmarks: list[str], split: str, batch_size: int, device: str) -> dict:
    """Runs in a Ray task: load a checkpoint from run storage and evaluate it on `split`."""
    from gadms.evaluate import chance_metrics, evaluate_split, local_copy, model_from_checkpoint

    with local_copy(checkpoint_path) as folder:
        model = model_from_checkpoint(folder).to(device)
    results = {}
    for root in benchmarks:
        data = read_benchmark(root).split(split)
        metrics = evaluate_split(model, data, batch_size=batch_size, device=device)
        results[data.benchmark] = {"split": split, **metrics, "chance": chance_metrics(data)}
    return results


@dataclass(frozen=True)
class RunPlan:
    """What the driver checked before any Ray work: the data, the step budget, where the run lives."""

    source: TrainingSource
    steps_per_epoch: int
    run_uri: str
    resume_from: str | None  # the run's latest checkpoint when rerunning an existing run


def epoch_steps(cfg: TrainJobConfig, source: TrainingSource) -> int:
    """Optimizer steps per epoch (the last partial global batch is dropped); at least one."""
    steps = source.samples // cfg.global_batch_size
    if steps == 0:
        raise UserError(
            f"data.uri {cfg.data.uri}: {source.samples} samples per epoch is less than one global batch "
            f"({cfg.global_batch_size}); lower global_batch_size"
        )
    return steps


def plan_run(cfg: TrainJobConfig) -> RunPlan:
    """Check every input (data, benchmarks, model, an existing run) and fail in one line if wrong."""
    source = describe_source(cfg.data)
    check_eval_benchmarks(cfg)
    steps_per_epoch = epoch_steps(cfg, source)
    # Build the model once on the driver: architecture and weight errors surface here, not in workers.
    model = GADMSModel(cfg.model, num_identities=source.num_identities)
    run_uri = storage.join(cfg.run.storage_path, cfg.run.name)
    resume_from = latest_checkpoint(run_uri)
    if resume_from is not None:
        saved = json.loads(storage.read_bytes(storage.join(resume_from, META_FILE)))
        where = f"run {run_uri} (checkpoint {resume_from})"
        try:
            check_compatible(model, saved["parameter_shapes"], where)
        except UserError as err:
            raise UserError(f"{err}; resume it with its own config or choose a new run.name") from None
    return RunPlan(source, steps_per_epoch, run_uri, resume_from)


def latest_checkpoint(run_uri: str) -> str | None:
    """The latest checkpoint Ray Train registered for a run (what it resumes from), or None.

    A folder alone is not enough: a driver killed mid-upload leaves a partial `step-*` folder that
    Ray never registered, so the run's checkpoint-manager snapshot is the record we trust.
    """
    snapshot_uri = storage.join(run_uri, RAY_CHECKPOINT_SNAPSHOT)
    if not storage.exists(snapshot_uri):
        return None
    snapshot = json.loads(storage.read_bytes(snapshot_uri))
    latest = (snapshot.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
    return storage.join(run_uri, latest) if latest else None


def build_trainer(
    cfg: TrainJobConfig, source: TrainingSource, steps_per_epoch: int, *,
    callbacks: Sequence[Any] = (), gpus_per_worker: float = 1.0,
) -> Any:
    """The run's TorchTrainer: data pipeline, workers, storage and checkpoint policy from `cfg`.

    Shared by `run_training` and the sweep's trials (which add Ray Tune's report callback and may
    give each worker a fraction of a GPU).
    """
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    # Progress bars of a streaming pipeline that lives as long as training are noise in job logs.
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = build_dataset(cfg.data, source, cfg.model.backbone.image_size, cfg.model.backbone.context_length)
    filesystem, storage_path = storage.resolve(cfg.run.storage_path)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "job": cfg.model_dump(mode="json"),
            "steps_per_epoch": steps_per_epoch,
            "num_identities": source.num_identities,
        },
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            accelerator_type=cfg.scaling.accelerator_type,  # e.g. keep training off the MLLM's L4 nodes
            resources_per_worker={
                "CPU": cfg.scaling.cpus_per_worker, **({"GPU": gpus_per_worker} if cfg.scaling.use_gpu else {})
            },
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            callbacks=list(callbacks),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # our own lines carry progress
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.run.num_to_keep, checkpoint_score_attribute=SCORE_KEY, checkpoint_score_order="max"
            ),
        ),
        datasets={"train": dataset},
    )


def run_training(cfg: TrainJobConfig, plan: RunPlan | None = None) -> TrainOutcome:
    import ray

    plan = plan or plan_run(cfg)
    source, steps_per_epoch, run_uri = plan.source, plan.steps_per_epoch, plan.run_uri
    if plan.resume_from:
        log.info("run %s exists: resuming from %s", run_uri, plan.resume_from)
    log.info(
        "training %s: %d samples/epoch, %d steps/epoch, %d epochs, global batch %d on %d worker(s); run at %s",
        cfg.model.objective, source.samples, steps_per_epoch, cfg.optim.epochs, cfg.global_batch_size,
        cfg.scaling.num_workers, run_uri,
    )
    result = build_trainer(cfg, source, steps_per_epoch).fit()
    latest = result.checkpoint
    if latest is None:
        raise RuntimeError(f"run {run_uri} finished without a checkpoint")
    best = result.get_best_checkpoint(SCORE_KEY, "max") if cfg.eval.benchmarks else latest
    best = best or latest
    with latest.as_directory() as folder:
        history = read_history(folder, HISTORY_FILE)

    exported = export_model(_uri_of(best, cfg), run_uri)
    summary: dict[str, Any] = {
        "name": cfg.run.name,
        "model": exported,
        "objective": cfg.model.objective,
        "steps": int(result.metrics.get("step", 0)),
        "epochs": int(result.metrics.get("epoch", 0)),
        "latest_checkpoint": _uri_of(latest, cfg),
        "best_checkpoint": _uri_of(best, cfg),
        "val": {k: v for k, v in _metrics_of(result, best).items() if k.startswith("val")},
    }
    if cfg.eval.benchmarks and cfg.eval.test_at_end:
        device = "cuda" if cfg.scaling.use_gpu else "cpu"
        task = ray.remote(num_cpus=1, num_gpus=1 if cfg.scaling.use_gpu else 0)(evaluate_best)
        summary["test"] = ray.get(
            task.remote(_uri_of(best, cfg), cfg.eval.benchmarks, cfg.eval.test_split, cfg.eval.batch_size, device)
        )
    written = write_run_report(history, summary, run_uri)
    if "test" in summary:
        print(f"\nrun {cfg.run.name}: best checkpoint by validation {summary['best_checkpoint']}")
        print(summary_table(summary))
    for kind, uri in written.items():
        print(f"{kind}: {uri}")
    return TrainOutcome(run_uri, summary, written)


def export_model(checkpoint_uri: str, run_uri: str) -> str:
    """Copy the selected checkpoint's weights to `<run>/model.pt`: what `backbone.pretrained` and
    fine-tuning take (the folder names of checkpoints change as Ray rotates them)."""
    fs, source = storage.resolve(storage.join(checkpoint_uri, MODEL_FILE))
    target = storage.join(run_uri, MODEL_FILE)
    fs.copy_file(source, storage.resolve(target)[1])
    return target


def _uri_of(checkpoint: Any, cfg: TrainJobConfig) -> str:
    """The checkpoint's location as a URI the project's tools accept (s3:// or a local path)."""
    return f"s3://{checkpoint.path}" if storage.is_s3(cfg.run.storage_path) else checkpoint.path


def _metrics_of(result: Any, checkpoint: Any) -> dict[str, Any]:
    for candidate, metrics in result.best_checkpoints or []:
        if candidate.path == checkpoint.path:
            return metrics
    return dict(result.metrics or {})
