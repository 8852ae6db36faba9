"""The sweep's report under `<experiment>/report/`: the results table (CSV and Markdown, best first),
the best trial as a ready-to-use training config, and plots of the metric against each knob."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from gadms import storage  # noqa: E402
from gadms.sweep.job import SweepPlan  # noqa: E402
from gadms.sweep.space import Dimension, apply_knobs  # noqa: E402
from gadms.train.config import TrainJobConfig  # noqa: E402
from gadms.train.loop import SCORE_KEY  # noqa: E402

HEATMAP_KNOBS = ("model.masking.alpha_noise", "model.masking.alpha_info")
CONTINUOUS_BINS = 4


def metric_column(plan: SweepPlan) -> str:
    return f"val_{plan.cfg.metric}"


def collect_rows(results: Any, plan: SweepPlan) -> list[dict[str, Any]]:
    """One row per trial (Tune's ResultGrid), sorted by its best validation score, best first."""
    column = metric_column(plan)
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id") or result.path.rsplit("trial_", 1)[-1]
        row: dict[str, Any] = {"trial": trial_id}
        row.update({d.symbol: _plain(result.config.get(d.knob)) for d in plan.dimensions})
        best, best_epoch, epochs = math.nan, 0, 0
        if frame is not None and len(frame) and SCORE_KEY in frame:
            epochs = int(frame["epoch"].max()) if "epoch" in frame else 0
            validated = frame[frame[SCORE_KEY] >= 0]
            if len(validated):
                top = validated.loc[validated[SCORE_KEY].idxmax()]
                best, best_epoch = float(top[SCORE_KEY]), int(top["epoch"])
        if result.error is not None:
            status = "error"
        elif epochs < plan.epochs:
            status = "stopped early"
        else:
            status = "completed"
        row.update({column: best, "best_epoch": best_epoch, "epochs": epochs, "status": status})
        rows.append(row)
    rows.sort(key=lambda r: (math.isnan(r[column]), -r[column] if not math.isnan(r[column]) else 0))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return [{"rank": r.pop("rank"), **r} for r in rows]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def results_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["rank"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def results_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[k]) for k in header) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def best_config(rows: list[dict[str, Any]], plan: SweepPlan) -> tuple[TrainJobConfig, dict[str, Any]] | None:
    """The best trial's knob values on the base recipe (without the trial-only overrides)."""
    column = metric_column(plan)
    ranked = [r for r in rows if not math.isnan(r[column])]
    if not ranked:
        return None
    top = ranked[0]
    values = {d.knob: top[d.symbol] for d in plan.dimensions}
    data = apply_knobs(plan.best_base.model_dump(mode="json"), values)
    data["run"]["name"] = f"{plan.cfg.experiment}-best"
    return TrainJobConfig.model_validate(data), top


def best_config_yaml(config: TrainJobConfig, top: dict[str, Any], plan: SweepPlan) -> str:
    knobs = ", ".join(f"{d.symbol}={top[d.symbol]}" for d in plan.dimensions)
    header = (
        f"# Best trial {top['trial']} of sweep {plan.cfg.experiment}: val {plan.cfg.metric} "
        f"{top[metric_column(plan)]:.2f} at epoch {top['best_epoch']} ({knobs}).\n"
        f"# The recipe {plan.cfg.train.config} with the sweep's overrides and these values. Train it with\n"
        "#   python -m gadms.train --config <this file>\n"
    )
    return header + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def knob_plot(rows: list[dict[str, Any]], dimension: Dimension, column: str) -> bytes:
    """The metric of every trial against one knob, marked by how the trial ended."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    values = [r[dimension.symbol] for r in rows]
    categorical = any(isinstance(v, str) for v in values)
    labels = sorted({str(v) for v in values}) if categorical else []
    for status, marker in (("completed", "o"), ("stopped early", "x"), ("error", "s")):
        chosen = [r for r in rows if r["status"] == status and not math.isnan(r[column])]
        if not chosen:
            continue
        xs = [labels.index(str(r[dimension.symbol])) if categorical else r[dimension.symbol] for r in chosen]
        ax.scatter(xs, [r[column] for r in chosen], marker=marker, label=status)
    if categorical:
        ax.set_xticks(range(len(labels)), labels)
    if dimension.type == "loguniform":
        ax.set_xscale("log")
    ax.set(xlabel=f"{dimension.symbol} ({dimension.knob})", ylabel=f"best {column} (%)")
    ax.legend(fontsize=8)
    return _png(fig)


def alpha_heatmap(rows: list[dict[str, Any]], dims: dict[str, Dimension], column: str) -> bytes:
    """Mean metric per (alpha_n, alpha_i) cell: the values of a choice/grid, or bins of a range."""
    noise, info = dims[HEATMAP_KNOBS[0]], dims[HEATMAP_KNOBS[1]]
    x_edges, x_labels = _bins(noise)
    y_edges, y_labels = _bins(info)
    sums, counts = np.zeros((len(y_labels), len(x_labels))), np.zeros((len(y_labels), len(x_labels)))
    for r in rows:
        if not math.isnan(r[column]):
            i, j = _index(y_edges, info, r[info.symbol]), _index(x_edges, noise, r[noise.symbol])
            sums[i, j] += r[column]
            counts[i, j] += 1
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    image = ax.imshow(mean, origin="lower", cmap="viridis", aspect="auto")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, f"{mean[i, j]:.1f}\nn={int(n)}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(len(x_labels)), x_labels, fontsize=7)
    ax.set_yticks(range(len(y_labels)), y_labels, fontsize=7)
    ax.set(xlabel="alpha_n", ylabel="alpha_i", title=f"mean best {column} (%)")
    fig.colorbar(image, ax=ax)
    return _png(fig)


def _bins(d: Dimension) -> tuple[list[Any], list[str]]:
    if d.values:
        values = sorted(d.values)
        return values, [f"{v:g}" for v in values]
    edges = np.linspace(d.low, d.high, CONTINUOUS_BINS + 1)
    return list(edges), [f"{a:.3g}-{b:.3g}" for a, b in zip(edges[:-1], edges[1:])]


def _index(edges: list[Any], d: Dimension, value: float) -> int:
    if d.values:
        return edges.index(value)
    return int(min(max(np.searchsorted(edges, value, side="right") - 1, 0), CONTINUOUS_BINS - 1))


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_report(rows: list[dict[str, Any]], plan: SweepPlan) -> dict[str, str]:
    """Everything above into `<experiment>/report/`; prints the table and returns what went where."""
    folder = storage.join(plan.experiment_uri, "report")
    column = metric_column(plan)
    files: dict[str, bytes] = {
        "results.csv": results_csv(rows).encode(),
        "results.md": results_markdown(rows).encode(),
    }
    best = best_config(rows, plan)
    if best is not None:
        files["best.yaml"] = best_config_yaml(*best, plan).encode()
    for d in plan.dimensions:
        files[f"plots/{column}_vs_{d.symbol}.png"] = knob_plot(rows, d, column)
    dims = {d.knob: d for d in plan.dimensions}
    if all(k in dims for k in HEATMAP_KNOBS):
        files[f"plots/{column}_alpha_n_x_alpha_i.png"] = alpha_heatmap(rows, dims, column)
    written = {}
    for name, data in files.items():
        uri = storage.join(folder, name)
        storage.write_bytes_atomic(uri, data)
        written[name] = uri
    print(f"\nsweep {plan.cfg.experiment}: {len(rows)} trial(s), best first (val {plan.cfg.metric}, %)\n")
    print(results_markdown(rows))
    for name, uri in written.items():
        print(f"{name}: {uri}")
    return written
