"""The Ray Train worker loop: the GA-DMS step under DDP, checkpoints, validation, progress logs.

One function, `train_loop_per_worker`, run by every worker of the TorchTrainer. It rebuilds the
model and optimiser from the job config, resumes from `ray.train.get_checkpoint()` when Ray hands
one over (a restarted worker group, or a rerun of the same run name), and then for each epoch
consumes its data shard, steps, logs, checkpoints every N steps and at the end of the epoch, and
validates on rank 0. The history of logged metrics travels inside every checkpoint, so curves
survive restarts. Resume is at epoch granularity for data (an interrupted epoch restarts from a
fresh pass over the data) and exact for the step count, optimiser, schedule and RNG.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gadms.checkpoint import TrainingProgress, load_checkpoint, save_checkpoint, unwrap
from gadms.cli import setup_logging
from gadms.data.benchmarks import BenchmarkSplit, read_benchmark
from gadms.evaluate import evaluate_split
from gadms.optim import build_optimizer, build_scheduler
from gadms.step import GADMSModel
from gadms.train.config import TrainJobConfig

log = logging.getLogger("gadms.train")
HISTORY_FILE = "history.json"
SCORE_KEY = "val_score"  # what CheckpointConfig ranks checkpoints by (higher is better)
NO_SCORE = -1.0  # before the first validation (scores are percentages >= 0)
LOSS_KEYS = ("loss", "sdm", "infonce", "mtp", "mlm", "id")  # logged, in this order
CHECKPOINT_PREFIX = "step-"  # checkpoint folders: step-00000120


def validation_score(metrics: dict[str, float], benchmarks: list[str], select: str) -> float:
    """Mean of the selected metric over the validated benchmarks."""
    return float(np.mean([metrics[f"val/{name}/{select}"] for name in benchmarks]))


class Validator:
    """Reads the validation splits once and evaluates the model on them (rank 0 only)."""

    def __init__(self, cfg: TrainJobConfig) -> None:
        self.cfg = cfg
        self.splits: dict[str, BenchmarkSplit] = {}
        for root in cfg.eval.benchmarks:
            benchmark = read_benchmark(root)
            if cfg.eval.val_split in benchmark.splits:  # ICFG-PEDES has none: it is tested only
                self.splits[benchmark.name] = benchmark.split(cfg.eval.val_split)

    def __call__(self, model: GADMSModel, device: torch.device, autocast_dtype: torch.dtype | None) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, split in self.splits.items():
            result = evaluate_split(
                model, split, batch_size=self.cfg.eval.batch_size, device=device, autocast_dtype=autocast_dtype,
                augment=self.cfg.data.augment,
            )
            metrics.update({f"val/{name}/{k}": v for k, v in result.items() if k in ("R1", "R5", "R10", "mAP", "mINP")})
        if metrics:
            metrics[SCORE_KEY] = validation_score(metrics, list(self.splits), self.cfg.eval.select_metric)
        return metrics


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    setup_logging(only="gadms")
    _quiet_ray_train_reports()
    cfg = TrainJobConfig.model_validate(loop_config["job"])
    steps_per_epoch: int = loop_config["steps_per_epoch"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(cfg.seed * 1000 + rank)
    device = ray.train.torch.get_device()
    use_bf16 = cfg.scaling.precision == "bf16" or (cfg.scaling.precision == "auto" and device.type == "cuda")
    autocast_dtype = torch.bfloat16 if use_bf16 else None

    model = GADMSModel(cfg.model, num_identities=loop_config["num_identities"])
    groups = model.parameter_groups()
    model = ray.train.torch.prepare_model(model)
    optimizer = build_optimizer(groups["backbone"], cfg.optim, new=groups["new"])
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch)
    total_steps = cfg.optim.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    progress, history = TrainingProgress(), []
    resume = ray.train.get_checkpoint()
    if resume is not None:
        with resume.as_directory() as folder:
            progress = load_checkpoint(folder, model, optimizer, scheduler)
            history = json.loads((Path(folder) / HISTORY_FILE).read_text())
        torch.manual_seed(cfg.seed * 1000 + rank + progress.step)  # fresh draws after a restart
        if rank == 0:
            log.info("resumed at step %d (epoch %d) from %s", progress.step, progress.epoch, resume.path)
    validator = Validator(cfg) if rank == 0 and cfg.eval.benchmarks else None
    shard = ray.train.get_dataset_shard("train")

    def report(metrics: dict[str, float], checkpoint: bool) -> None:
        """Every worker reports (it is a barrier); rank 0 also writes the checkpoint it attaches."""
        # Every report carries the latest validation score, so any checkpoint can be ranked by it.
        metrics = {SCORE_KEY: progress.metrics.get(SCORE_KEY, NO_SCORE), **metrics,
                   "step": progress.step, "epoch": progress.epoch}
        if not checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            attached = None
            if rank == 0:
                save_checkpoint(folder, model, progress, optimizer, scheduler, config=loop_config["job"])
                (Path(folder) / HISTORY_FILE).write_text(json.dumps(history))
                attached = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=attached, checkpoint_dir_name=f"{CHECKPOINT_PREFIX}{progress.step:08d}")

    if progress.epoch >= cfg.optim.epochs or progress.step >= total_steps:
        # A rerun of a finished run (or a sweep trial restored after its last checkpoint): nothing to
        # train, but the caller's result (and Tune's) must still say where the run ended.
        report(dict(progress.metrics), checkpoint=False)
        return
    model.train()
    for epoch in range(progress.epoch, cfg.optim.epochs):
        epoch_end = min((epoch + 1) * steps_per_epoch, total_steps)
        window = StepWindow()
        for batch in shard.iter_torch_batches(
            batch_size=cfg.per_worker_batch_size, drop_last=True,
            local_shuffle_buffer_size=cfg.data.local_shuffle_buffer or None,
        ):
            window.data_ready()
            valid = batch["valid"].bool()
            window.skipped += int((~valid).sum())
            if not _every_rank_has_samples(int(valid.sum()), world, device):
                window.step_done(0)
                continue
            images = batch["image"][valid].to(device, non_blocking=True)
            tokens = batch["tokens"][valid].to(device, non_blocking=True)
            pids = batch["pid"][valid].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext():
                output = model(images, tokens, pids)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            if cfg.optim.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            progress.step += 1
            window.step_done(len(images), output)

            if progress.step % cfg.run.log_every_steps == 0 or progress.step == epoch_end:
                entry = window.summary(progress.step, epoch, optimizer.param_groups[0]["lr"])
                history.append(entry)
                if rank == 0:
                    log.info(_format_entry(entry))
                window = StepWindow()
                every = cfg.run.checkpoint_every_steps
                report(entry, checkpoint=bool(every) and progress.step % every == 0 and progress.step < epoch_end)
            if progress.step >= epoch_end:
                break

        progress.epoch = epoch + 1
        finished = progress.step >= total_steps
        metrics: dict[str, float] = {}
        if validator is not None and (progress.epoch % cfg.eval.every_epochs == 0 or finished):
            metrics = validator(unwrap(model), device, autocast_dtype)
            model.train()
            score = metrics[SCORE_KEY]
            if progress.best_metric is None or score > progress.best_metric:
                progress.best_metric = score
            progress.metrics = metrics
            history.append({"step": progress.step, "epoch": epoch, **metrics})
            log.info("epoch %d validation: %s", epoch, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        report(metrics, checkpoint=True)
        if finished:
            break


def _quiet_ray_train_reports() -> None:
    """Ray Train logs every report at INFO under a logger named by its source file, outside the
    "ray.train" hierarchy that LoggingConfig sets: one line per step of noise in job logs."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray version: nothing to quiet
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def _every_rank_has_samples(count: int, world: int, device: torch.device) -> bool:
    """False when any rank's batch lost all its rows to undecodable images: all ranks skip together."""
    if world == 1:
        return count > 0
    smallest = torch.tensor([count], device=device)
    dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    return int(smallest.item()) > 0


class StepWindow:
    """Accumulates losses, throughput and data-wait time between two log lines."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.wait = 0.0
        self.samples = self.steps = self.skipped = 0
        self.sums: dict[str, float] = {}

    def data_ready(self) -> None:
        self.wait += time.perf_counter() - self.last

    def step_done(self, samples: int, output: Any = None) -> None:
        self.last = time.perf_counter()
        if output is None:
            return
        self.samples += samples
        self.steps += 1
        for name, value in {"loss": output.loss.detach(), **output.losses, **output.metrics}.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def summary(self, step: int, epoch: int, lr: float) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        entry = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        return {
            "step": step, "epoch": epoch, **entry, "lr": lr,
            "samples_per_s": self.samples / elapsed, "data_wait_frac": self.wait / elapsed,
            "skipped_rows": float(self.skipped),
        }


def _format_entry(entry: dict[str, float]) -> str:
    losses = " ".join(f"{k} {entry[k]:.4f}" for k in LOSS_KEYS if k in entry)
    return (
        f"step {entry['step']} epoch {entry['epoch']} {losses} lr {entry['lr']:.2e} "
        f"{entry['samples_per_s']:.1f} samples/s/worker data-wait {100 * entry['data_wait_frac']:.0f}%"
        + (f" skipped {int(entry['skipped_rows'])}" if entry["skipped_rows"] else "")
    )
