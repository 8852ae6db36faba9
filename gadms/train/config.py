"""The training job's config: what to train (model), on what (data), how (optim, scaling), where to
keep it (run), how to judge it (eval). Recipes are YAML files in configs/train/."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gadms.augment import AugmentConfig
from gadms.config import Config
from gadms.optim import OptimConfig
from gadms.step import GADMSConfig

BENCHMARK_NAMES = ("cuhk-pedes", "icfg-pedes", "rstpreid")


class DataConfig(Config):
    source: Literal["webperson", "benchmark"] = Field(
        "webperson", description="webperson: Parquet (pretraining); benchmark: a benchmark's train split"
    )
    uri: str = Field(..., min_length=1, description="WebPerson Parquet file or folder, or a benchmark root")
    pids: Literal["caption", "image"] = Field(
        "caption",
        description="WebPerson identity of a sample for SDM: every caption its own (release) or per image",
    )
    max_rows: int | None = Field(None, ge=1, description="read at most this many rows (smoke runs)")
    augment: AugmentConfig = AugmentConfig()
    preprocess_batch_size: int = Field(32, ge=1, description="rows per Ray Data preprocessing batch")
    preprocess_cpus: float = Field(1.0, gt=0, description="CPUs per Ray Data preprocessing task")
    local_shuffle_buffer: int = Field(0, ge=0, description="rows in each worker's shuffle buffer; 0: off")


class EvalConfig(Config):
    benchmarks: list[str] = Field(
        default_factory=list, description="benchmark roots (local or s3://) evaluated on val and test"
    )
    val_split: str = Field("val", description="split used for model selection (never test)")
    test_split: str = Field("test", description="split reported at the end with the best checkpoint")
    every_epochs: int = Field(1, ge=1, description="validate every N epochs (and after the last)")
    select_metric: Literal["R1", "R5", "R10", "mAP", "mINP"] = Field(
        "R1", description="validation metric (mean over benchmarks) that picks the best checkpoint"
    )
    batch_size: int = Field(128, ge=1)
    test_at_end: bool = True


class ScalingSection(Config):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on GPU, fp32 on CPU"
    )
    accelerator_type: str | None = Field(
        None, description="GPU type every worker needs, as Ray names it (A100, H100, L4, ...); None: any GPU"
    )

    @model_validator(mode="after")
    def _accelerator_needs_gpus(self) -> ScalingSection:
        if self.accelerator_type is not None and not self.use_gpu:
            raise ValueError(f"accelerator_type ({self.accelerator_type}) needs use_gpu: true")
        return self


class RunSection(Config):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="rerun the same name to resume")
    storage_path: str = Field("outputs/runs", description="local folder or s3:// prefix for checkpoints")
    checkpoint_every_steps: int = Field(0, ge=0, description="also checkpoint every N steps; 0: epoch ends only")
    num_to_keep: int = Field(2, ge=1, description="checkpoints kept (best by validation, plus the latest)")
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint")
    log_every_steps: int = Field(10, ge=1)


class TrainJobConfig(Config):
    run: RunSection
    model: GADMSConfig = GADMSConfig()
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    scaling: ScalingSection = ScalingSection()
    eval: EvalConfig = EvalConfig()
    global_batch_size: int = Field(512, ge=1, description="samples per optimiser step over all workers")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (smoke runs)")
    seed: int = 0

    @model_validator(mode="after")
    def _batch_splits_over_workers(self) -> TrainJobConfig:
        if self.global_batch_size % self.scaling.num_workers:
            raise ValueError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of "
                f"scaling.num_workers ({self.scaling.num_workers})"
            )
        return self

    @property
    def per_worker_batch_size(self) -> int:
        return self.global_batch_size // self.scaling.num_workers
