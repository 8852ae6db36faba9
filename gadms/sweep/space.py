"""The search space: which knobs exist, their default ranges around the base value, and checks.

Everything here is plain Python (no Ray): a bad entry fails in one line before any trial starts.
A knob's default range is centred on its value in the base training config, which is the paper's
value in the production recipe (alpha_n 0.2, alpha_i 0.3, lambda 20, gamma_n 0.9, gamma_i 0.1,
beta 0.4, L 8, score_norm batch).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gadms.config import format_validation_error, set_dotted
from gadms.errors import UserError
from gadms.sweep.config import KnobSpace
from gadms.train.config import TrainJobConfig


@dataclass(frozen=True)
class Knob:
    symbol: str  # METHOD.md's name, used in tables and plots
    kind: str  # float | int | category
    spread: float = 0.0  # default half-width (float), step (int) or factor (multiplicative float)
    multiplicative: bool = False  # default range centre/spread .. centre*spread (log scale)
    unit_interval: bool = False  # a ratio or threshold: every value must lie in [0, 1]
    categories: tuple[str, ...] = ()


KNOBS: dict[str, Knob] = {
    "model.masking.alpha_noise": Knob("alpha_n", "float", 0.1, unit_interval=True),
    "model.masking.alpha_info": Knob("alpha_i", "float", 0.1, unit_interval=True),
    "model.masking.sharpness": Knob("lambda", "float", 2.0, multiplicative=True),
    "model.masking.gamma_noise": Knob("gamma_n", "float", 0.1, unit_interval=True),
    "model.masking.gamma_info": Knob("gamma_i", "float", 0.1, unit_interval=True),
    "model.loss.mtp_weight": Knob("beta", "float", 0.2),
    "model.scoring.layers": Knob("L", "int", 2),
    "model.scoring.score_norm": Knob("score_norm", "category", categories=("batch", "sample")),
}


@dataclass(frozen=True)
class Dimension:
    """A knob's resolved distribution: `values` for choice/grid, `low`/`high` for (log)uniform."""

    knob: str
    type: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def symbol(self) -> str:
        return KNOBS[self.knob].symbol

    def extremes(self) -> list[Any]:
        return list(self.values) if self.values else [self.low, self.high]


def get_dotted(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def default_values(knob: Knob, centre: Any) -> tuple[Any, ...]:
    """Three values around the centre (or every category), for a choice/grid left without values."""
    if knob.kind == "category":
        return knob.categories
    if knob.kind == "int":
        step = int(knob.spread)
        return tuple(v for v in (centre - step, centre, centre + step) if v >= 1)
    low, high = default_range(knob, centre)
    return tuple(dict.fromkeys((low, float(centre), high)))


def default_range(knob: Knob, centre: float) -> tuple[float, float]:
    if knob.multiplicative:
        return centre / knob.spread, centre * knob.spread
    low, high = centre - knob.spread, centre + knob.spread
    if knob.unit_interval:
        low, high = max(low, 0.0), min(high, 1.0)
    return round(max(low, 0.0), 10), round(high, 10)


def resolve_space(
    space: dict[str, KnobSpace], base: TrainJobConfig, algorithm: str = "random"
) -> list[Dimension]:
    """Check every entry and fill in default values; raises UserError naming the entry."""
    if not space:
        raise UserError("space: empty: name at least one knob (known: " + ", ".join(KNOBS) + ")")
    base_data = base.model_dump(mode="json")
    dimensions = []
    for name, entry in space.items():
        where = f"space.{name}"
        knob = KNOBS.get(name)
        if knob is None:
            raise UserError(f"space: unknown knob {name!r} (known: {', '.join(KNOBS)})")
        centre = get_dotted(base_data, name)
        dimension = _resolve_entry(where, name, knob, entry, centre)
        if dimension.type == "grid" and algorithm == "optuna":
            raise UserError(f"{where}: grid is not supported by search.algorithm optuna (use choice)")
        for value in dimension.extremes():
            _check_value(where, knob, value, base_data, name)
        dimensions.append(dimension)
    return dimensions


def _resolve_entry(where: str, name: str, knob: Knob, entry: KnobSpace, centre: Any) -> Dimension:
    if entry.type in ("choice", "grid"):
        if entry.low is not None or entry.high is not None:
            raise UserError(f"{where}: {entry.type} takes `values`, not low/high")
        values = tuple(entry.values) if entry.values is not None else default_values(knob, centre)
        if not values:
            raise UserError(f"{where}: empty {entry.type}: give at least one value")
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"{where}: repeated values in {list(values)}")
        return Dimension(name, entry.type, values=values)
    if knob.kind != "float":
        raise UserError(f"{where}: {knob.symbol} takes discrete values: use choice or grid, not {entry.type}")
    if entry.values is not None:
        raise UserError(f"{where}: {entry.type} takes low/high, not `values`")
    default_low, default_high = default_range(knob, centre)
    low = entry.low if entry.low is not None else default_low
    high = entry.high if entry.high is not None else default_high
    if not low < high:
        raise UserError(f"{where}: empty range: low ({low}) must be below high ({high})")
    if entry.type == "loguniform" and low <= 0:
        raise UserError(f"{where}: loguniform needs low > 0 (got {low})")
    return Dimension(name, entry.type, low=float(low), high=float(high))


def _check_value(where: str, knob: Knob, value: Any, base_data: dict[str, Any], name: str) -> None:
    """A value must be one the training config accepts (its own bounds), and a ratio within [0, 1]."""
    if knob.unit_interval and isinstance(value, (int, float)) and not 0 <= value <= 1:
        raise UserError(f"{where}: {knob.symbol} = {value} is outside [0, 1]")
    if knob.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{where}: {knob.symbol} must be a whole number (got {value!r})")
    data = copy.deepcopy(base_data)
    set_dotted(data, name, value)
    try:
        TrainJobConfig.model_validate(data)
    except ValidationError as err:
        problem = format_validation_error(err, TrainJobConfig)
        raise UserError(f"{where}: value {value!r} rejected: {problem}") from None


def apply_knobs(base_data: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The training config (as data) with a trial's knob values set."""
    data = copy.deepcopy(base_data)
    for name in KNOBS:
        if name in params:
            value = params[name]
            set_dotted(data, name, value.item() if hasattr(value, "item") else value)
    return data


def tune_domains(dimensions: list[Dimension]) -> dict[str, Any]:
    """Tune's param_space: one domain per knob, keyed by the knob's dotted path."""
    from ray import tune

    domains: dict[str, Any] = {}
    for d in dimensions:
        if d.type == "choice":
            domains[d.knob] = tune.choice(list(d.values))
        elif d.type == "grid":
            domains[d.knob] = tune.grid_search(list(d.values))
        elif d.type == "uniform":
            domains[d.knob] = tune.uniform(d.low, d.high)
        else:
            domains[d.knob] = tune.loguniform(d.low, d.high)
    return domains
