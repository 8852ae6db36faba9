"""The sweep's config: which training run to vary, the search space, how to search and where to keep it.

The search space names knobs of the training config by their dotted path (METHOD.md symbol):

| knob | symbol |
|---|---|
| model.masking.alpha_noise | alpha_n |
| model.masking.alpha_info | alpha_i |
| model.masking.sharpness | lambda |
| model.masking.gamma_noise | gamma_n |
| model.masking.gamma_info | gamma_i |
| model.loss.mtp_weight | beta |
| model.scoring.layers | L |
| model.scoring.score_norm | score_norm |

Each entry is a distribution: `choice` / `grid` (a list of `values`), `uniform` / `loguniform`
(`low`, `high`). Left out, the values default to a range around the knob's value in the base
training config (the paper's value in configs/train/pretrain.yaml); see `gadms.sweep.space`.
An entry may also be just the distribution's name: `model.masking.alpha_noise: uniform`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gadms.config import Config

Metric = Literal["R1", "mAP"]


class KnobSpace(Config):
    type: Literal["choice", "grid", "uniform", "loguniform"] = Field(
        ..., description="choice/grid: one of `values`; uniform/loguniform: a float in [low, high]"
    )
    values: list[Any] | None = Field(None, description="choice and grid: the candidates")
    low: float | None = Field(None, description="uniform and loguniform: lower bound")
    high: float | None = Field(None, description="uniform and loguniform: upper bound")


class TrainSection(Config):
    config: str = Field(..., min_length=1, description="the training recipe every trial runs (a YAML path)")
    overrides: list[str] = Field(
        default_factory=list, description="key=value overrides of the trials and the best config (data paths)"
    )
    trial_overrides: list[str] = Field(
        default_factory=list,
        description="key=value overrides for the trials only (fewer epochs or rows); not in the best config",
    )


class SchedulerSection(Config):
    type: Literal["asha", "fifo"] = Field("asha", description="asha: stop weak trials early; fifo: run all")
    grace_period: int = Field(1, ge=1, description="ASHA: epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep 1/reduction_factor at each rung")
    max_t: int | None = Field(None, ge=1, description="ASHA: last rung in epochs; default the trials' epochs")


class SearchSection(Config):
    algorithm: Literal["random", "optuna"] = Field(
        "random", description="random: random draws and full grids (Tune's variant generator); optuna: TPE"
    )
    seed: int = Field(0, description="seed of the draws (random) or of the TPE sampler (optuna)")


class TrialResources(Config):
    workers: int = Field(1, ge=1, description="Ray Train workers per trial")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs per worker (fractions allowed)")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per worker; 0: CPU; fractions share a GPU")
    driver_cpus: float = Field(
        0.1, gt=0, description="CPUs of each trial's driver (the Tune function that starts the trainer)"
    )

    @field_validator("gpus_per_worker")
    @classmethod
    def _whole_or_fraction(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError("must be a fraction of one GPU or a whole number of GPUs")
        return value


class SweepConfig(Config):
    experiment: str = Field(
        ..., min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="rerun the same name to resume the sweep"
    )
    storage_path: str = Field("outputs/sweeps", description="local folder or s3:// prefix: trials, report")
    train: TrainSection
    space: dict[str, KnobSpace] = Field(..., description="knob (dotted training-config path) -> distribution")
    metric: Metric = Field("R1", description="validation metric (mean over eval.benchmarks' val splits)")
    scheduler: SchedulerSection = SchedulerSection()
    search: SearchSection = SearchSection()
    num_samples: int = Field(8, ge=1, description="trials (with grid knobs: repeats of the whole grid)")
    max_concurrent_trials: int = Field(1, ge=1, description="trials at a time (upper bound)")
    limit_to_cluster: bool = Field(
        True, description="also cap concurrency by the cluster's resources now (off for autoscaling clusters)"
    )
    resources: TrialResources = TrialResources()
    max_failures: int = Field(1, ge=0, description="retries of a failed trial (from its checkpoint)")

    @field_validator("space", mode="before")
    @classmethod
    def _flat_knobs(cls, value: Any) -> Any:
        """Knob names are dotted paths; nested sections (from a command-line override such as
        `space.model.masking.alpha_noise.high=0.3`) merge into them; an entry that names its `type`
        replaces the earlier one. `knob: uniform` is `knob: {type: uniform}` (values around the base
        config's value)."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}
        _flatten(value, "", flat)
        return flat


def _flatten(node: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, entry in node.items():
        name = f"{prefix}{key}"
        if isinstance(entry, str):
            entry = {"type": entry}
        if isinstance(entry, dict) and entry and not set(entry) & set(KnobSpace.model_fields):
            _flatten(entry, f"{name}.", out)
        elif isinstance(entry, dict) and isinstance(out.get(name), dict) and "type" not in entry:
            out[name] = {**out[name], **entry}  # e.g. only `high` changed: keep the rest
        else:
            out[name] = entry
