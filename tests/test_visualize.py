"""Token-score report: numbers consistent with the curves, PNG and HTML written, CLI runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from model_helpers import CAPTIONS, random_images, tiny_backbone, tiny_gadms_config
from PIL import Image

from gadms.masking import info_probability, noise_probability
from gadms.visualize import main, token_report, write_html, write_png


def test_report_png_and_html(tmp_path):
    cfg = tiny_gadms_config()
    backbone = tiny_backbone(dtype=torch.float32)
    report = token_report(backbone, random_images(1, dtype=torch.float32)[0], CAPTIONS[1], cfg, seed=3)
    n = len(report.tokens)
    assert report.tokens[0] == "<start_of_text>" and report.tokens[-1] == "<end_of_text>"
    assert len(report.scores) == len(report.p_noise) == len(report.info_hit) == n
    assert max(report.scores) == pytest.approx(1.0) and report.scores[0] == report.scores[-1] == 0.0
    expected = noise_probability(torch.tensor(report.scores[1:-1]), cfg.masking)
    assert report.p_noise[1:-1] == pytest.approx(expected.tolist())
    expected = info_probability(torch.tensor(report.scores[1:-1]), cfg.masking)
    assert report.p_info[1:-1] == pytest.approx(expected.tolist())
    assert not report.noise_hit[0] and not report.info_hit[-1]
    assert any(report.noise_hit) and any(report.info_hit)
    png = write_png(report, tmp_path / "scores.png", image=Image.new("RGB", (16, 32), "red"))
    page = write_html(report, tmp_path / "scores.html", png=png)
    assert Image.open(png).size[0] > 200
    text = page.read_text()
    assert "sneakers" in text and "data:image/png;base64," in text and text.count('class="tok"') == 3 * n


def test_command_line(tmp_path, capsys):
    cfg = tiny_gadms_config().model_dump(mode="json")
    config = tmp_path / "model.yaml"
    config.write_text(yaml.safe_dump(cfg))
    image = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(0).random((128, 48, 3)) * 255).astype("uint8")).save(image)
    out = tmp_path / "out"
    common = ["--image", str(image)]
    status = main(["--config", str(config), *common, "--caption", CAPTIONS[0], "--out", str(out),
                   "scoring.score_norm=sample"])
    assert status == 0
    assert (out / "token_scores.png").is_file() and (out / "token_scores.html").is_file()
    assert "wrote" in capsys.readouterr().out
    # The model section of a bigger job config.
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"model": cfg, "optim": {"lr": 1e-4}}))
    status = main(["--config", str(job), "--section", "model", *common, "--caption", CAPTIONS[2],
                   "--out", str(tmp_path / "out2"), "masking.alpha_noise=0.25"])
    assert status == 0 and (tmp_path / "out2" / "token_scores.html").is_file()
