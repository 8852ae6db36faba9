"""What GA-DMS thinks of a caption: per-token GASS scores and what each masking view would hit.

`token_report(backbone, image, caption, cfg)` scores one (image, caption) pair and draws both
masked views once (seeded); `write_png` and `write_html` render it. For one pair the batch and the
sample normalisation coincide: the best-supported token scores 1. In training, with batch
normalisation, a weakly matching pair gets lower scores on every token.

Command line (weights from the config's `backbone.pretrained`: a tag, a file or s3://):
    python -m gadms.visualize --config model.yaml --image crop.jpg \
        --caption "a woman in a red coat ..." --out outputs/scores [backbone.pretrained=...]
writes `<out>/token_scores.png` and `<out>/token_scores.html`. `--section model` reads the model
config from that key of a training job's config instead.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from gadms.augment import AugmentConfig, eval_transform
from gadms.backbone import Backbone
from gadms.gass import token_scores
from gadms.masking import dual_masking, info_probability, noise_probability
from gadms.step import GADMSConfig
from gadms.tokenizer import CaptionTokenizer, content_mask

log = logging.getLogger(__name__)


@dataclass
class TokenReport:
    caption: str
    tokens: list[str]  # sot .. eot
    scores: list[float]  # GASS score, 0 at sot / eot
    content: list[bool]  # positions that are scored and maskable
    p_noise: list[float]  # selection probability in the noise (contrastive) view
    p_info: list[float]  # selection probability in the informative (MTP) view
    noise_hit: list[bool]  # one seeded draw of each view
    info_hit: list[bool]
    similarity: float  # cos(image, caption) of the pair


def token_report(
    backbone: Backbone, image: torch.Tensor, caption: str, cfg: GADMSConfig, seed: int = 0
) -> TokenReport:
    """Score `caption` against `image` (`[3, H, W]`, normalised like training inputs)."""
    tokenizer = CaptionTokenizer(backbone.context_length)
    tokens = tokenizer(caption)
    device = next(backbone.parameters()).device
    dtype = next(backbone.parameters()).dtype
    tokens, images = tokens.to(device), image.unsqueeze(0).to(device=device, dtype=dtype)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            image_cls = backbone.encode_image(images).cls
            text_eot = backbone.encode_text(tokens).eot
        scores = token_scores(backbone, image_cls, tokens, cfg.scoring)
    finally:
        backbone.train(was_training)
    generator = torch.Generator(device=device).manual_seed(seed)
    noise, info = dual_masking(tokens, scores, cfg.masking, generator)
    length = int(tokens[0].argmax()) + 1
    content = content_mask(tokens)[0, :length]
    p_noise = torch.where(content, noise_probability(scores[0, :length].float(), cfg.masking), 0.0)
    p_info = torch.where(content, info_probability(scores[0, :length].float(), cfg.masking), 0.0)
    similarity = torch.nn.functional.cosine_similarity(image_cls.float(), text_eot.float())
    return TokenReport(
        caption=caption,
        tokens=tokenizer.token_strings(tokens[0].cpu()),
        scores=scores[0, :length].float().tolist(),
        content=content.tolist(),
        p_noise=p_noise.tolist(),
        p_info=p_info.tolist(),
        noise_hit=noise.selected[0, :length].tolist(),
        info_hit=info.selected[0, :length].tolist(),
        similarity=float(similarity),
    )


def write_png(report: TokenReport, path: str | Path, image=None) -> Path:
    """Three coloured rows under the tokens (score, p_noise, p_info); x marks one draw's hits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(report.tokens)
    rows = [
        ("GASS score", report.scores, "viridis", 1.0, None),
        ("noise view p", report.p_noise, "Reds", max(max(report.p_noise), 1e-6), report.noise_hit),
        ("info view p", report.p_info, "Blues", max(max(report.p_info), 1e-6), report.info_hit),
    ]
    token_width = max(4.5, 0.34 * n)
    image_width = 1.4 if image is not None else 0.0
    fig = plt.figure(figsize=(token_width + image_width + 1.2, 3.6))
    if image is not None:
        grid = fig.add_gridspec(3, 2, width_ratios=[image_width, token_width])
        ax_image = fig.add_subplot(grid[:, 0])
        ax_image.imshow(image)
        ax_image.set_axis_off()
    else:
        grid = fig.add_gridspec(3, 1)
    for r, (label, values, cmap, vmax, hits) in enumerate(rows):
        ax = fig.add_subplot(grid[r, -1])
        data = np.ma.masked_array([values], mask=[[not c for c in report.content]])
        colours = plt.get_cmap(cmap)
        ax.imshow(data, cmap=colours, vmin=0.0, vmax=vmax, aspect="auto")
        for j, value in enumerate(values):
            if report.content[j]:
                r_, g_, b_, _ = colours(value / vmax)
                dark = 0.299 * r_ + 0.587 * g_ + 0.114 * b_ < 0.5
                ax.text(j, -0.1, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
            if hits is not None and hits[j]:
                ax.plot(j, 0.28, marker="X", markerfacecolor="white", markeredgecolor="black", markersize=7)
        ax.set_yticks([0], [label], fontsize=8)
        ax.set_xticks(range(n), report.tokens if r == 2 else [""] * n, rotation=90, fontsize=8)
        ax.tick_params(length=0)
    fig.suptitle(f"cos(image, caption) = {report.similarity:.3f}    x = masked in one draw", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def write_html(report: TokenReport, path: str | Path, png: Path | None = None) -> Path:
    """The caption three times: coloured by score, with the noise view's and the info view's hits."""

    def span(text: str, style: str, title: str) -> str:
        return f'<span class="tok" style="{style}" title="{html.escape(title)}">{html.escape(text)}</span>'

    lines = {"score": [], "noise": [], "info": []}
    for j, token in enumerate(report.tokens):
        tip = (
            f"score {report.scores[j]:.3f} | p_noise {report.p_noise[j]:.3f} | p_info {report.p_info[j]:.3f}"
        )
        plain = "" if report.content[j] else "color: #888"  # grey: sot / eot, never scored or masked
        shade = f"background: rgba(34, 139, 34, {report.scores[j]:.3f})" if report.content[j] else plain
        lines["score"].append(span(token, shade, tip))
        for view, hits, colour in (
            ("noise", report.noise_hit, "220, 50, 47"),
            ("info", report.info_hit, "38, 139, 210"),
        ):
            style = f"background: rgba({colour}, 0.8); color: white" if hits[j] else plain
            lines[view].append(span(token, style, tip))
    image_tag = ""
    if png is not None:
        encoded = base64.b64encode(Path(png).read_bytes()).decode()
        image_tag = f'<p><img src="data:image/png;base64,{encoded}" style="max-width: 100%"></p>'
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GA-DMS token scores</title>
<style>body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
.tok {{ display: inline-block; padding: 2px 4px; margin: 2px; border-radius: 3px; border: 1px solid #ddd; }}
h2 {{ font-size: 1em; margin-bottom: 0.3em; }}</style></head><body>
<h1>GA-DMS token scores</h1>
<p>Caption: {html.escape(report.caption)}<br>cos(image, caption) = {report.similarity:.3f}.
Hover a token for its score and masking probabilities.</p>
<h2>GASS score (darker = more supported by the image; grey = not scored)</h2><p>{''.join(lines['score'])}</p>
<h2>Noise view (contrastive loss): tokens masked in one draw</h2><p>{''.join(lines['noise'])}</p>
<h2>Informative view (masked token prediction): tokens masked in one draw</h2><p>{''.join(lines['info'])}</p>
{image_tag}
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    from PIL import Image
    from pydantic import ConfigDict, create_model

    from gadms.cli import config_arg_parser
    from gadms.config import load_config
    from gadms.errors import UserError

    parser = config_arg_parser("Show GA-DMS token scores and masking for one image and caption")
    parser.add_argument("--image", required=True, help="image file (a person crop)")
    parser.add_argument("--caption", required=True, help="the caption to score")
    parser.add_argument("--out", default="outputs/token_scores", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masking draw")
    parser.add_argument(
        "--section", default=None, help="read the model config from this key of a job config (e.g. model); "
        "overrides are then relative to it"
    )
    args = parser.parse_args(argv)
    if args.section:
        fields = {args.section: (GADMSConfig, ...)}
        job = create_model("JobConfig", __config__=ConfigDict(extra="ignore"), **fields)
        overrides = [f"{args.section}.{item}" for item in args.overrides]
        cfg = getattr(load_config(job, args.config, overrides), args.section)
    else:
        cfg = load_config(GADMSConfig, args.config, args.overrides)
    if cfg.backbone.pretrained is None:
        log.warning("backbone.pretrained is null: scoring with RANDOM weights")
    backbone = Backbone.from_config(cfg.backbone)
    try:
        picture = Image.open(args.image).convert("RGB")
    except (OSError, ValueError) as err:
        raise UserError(f"--image {args.image}: cannot read image ({err})") from None
    image = eval_transform(backbone.image_size, AugmentConfig())(picture)
    report = token_report(backbone, image, args.caption, cfg, seed=args.seed)
    out = Path(args.out)
    png = write_png(report, out / "token_scores.png", image=picture.resize(backbone.image_size[::-1]))
    page = write_html(report, out / "token_scores.html", png=png)
    print(f"wrote {png} and {page}")
    return 0


if __name__ == "__main__":
    from gadms.cli import run_main

    run_main(main)
