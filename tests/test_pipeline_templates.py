"""The template-bank builder: lexicon rewriting, validation, k-means selection, the LLM path's checks,
and the entry point on a synthetic benchmark. The embedder is a tiny random OpenCLIP text tower."""

from __future__ import annotations


import numpy as np
import pytest

from gadms.backbone import BackboneConfig
from gadms.synth.attributes import sample_identity
from gadms.synth.captions import two_captions
from gadms.synth.crops import sample_pose
from gadms.synth.world import stream_rng
from pipelines.dataset.template_bank import TemplateJobConfig, build_bank, lexicon_template, select, write_bank
from pipelines.dataset.templates import check_template, load_bank

TINY = BackboneConfig(pretrained=None, image_size=(64, 32), custom_architecture={
    "embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}})  # fmt: skip


def synthetic_captions(n: int) -> list[str]:
    rng = stream_rng(1, "templates")
    return [c for i in range(n) for c in two_captions(sample_identity(stream_rng(1, "p", i), i), sample_pose(rng), rng)]


def test_lexicon_rewrites_keep_structure_and_use_known_placeholders():
    template = lexicon_template("A woman with long brown hair wears a red jacket, blue jeans and white sneakers.")
    assert template == "A [gender] with [hairstyle] wears a [colored outerwear], [colored bottom] and [colored footwear]."
    assert check_template(template) == []


def test_bank_selection_is_per_cluster_and_deterministic(tmp_path):
    cfg = TemplateJobConfig(rewriter="lexicon", embedder=TINY, clusters=4, per_cluster_random=2, target=1000)
    bank, report = build_bank(cfg, synthetic_captions(40))
    assert report["valid_rewrites"] >= 8 and len(bank) == report["selected"] <= 4 * 3
    assert {b["cluster"] for b in bank} == set(range(4)) and report["synthesised"] == 0  # no LLM: no synthesis
    again, _ = build_bank(cfg, synthetic_captions(40))
    assert [b["template"] for b in again] == [b["template"] for b in bank]
    write_bank(str(tmp_path / "bank.jsonl"), bank)
    assert len(load_bank(str(tmp_path / "bank.jsonl"))) == len(bank)  # the job reads what this writes


def test_kmeans_selection_picks_the_centroid_nearest():
    points = np.array([[0, 0], [0.1, 0], [5, 5], [5.2, 5], [5.1, 5.1]], np.float32)
    kept = select(points, 2, 0, seed=0)
    assert sorted(i for i, _ in kept) == [0, 4] or sorted(i for i, _ in kept) == [1, 4]


def test_llm_rewrites_are_validated_and_synthesis_fills_to_the_target():
    answers = iter(["A [gender] in a [colored top] and [colored bottom].", "Sure! Here it is", "A [gender] wears [foo].",
                    "The [gender] carries a [bag] and wears [colored footwear]."] + [
                    f"A [gender] in [colored top] is [action] number {i}." for i in range(20)])  # fmt: skip
    cfg = TemplateJobConfig(rewriter="llm", embedder=TINY, clusters=2, per_cluster_random=0, target=5, max_captions=4)
    bank, report = build_bank(cfg, ["c1", "c2", "c3", "c4"], rewriter=lambda prompt: next(answers))
    assert report["valid_rewrites"] == 2 and sum(report["rejected_rewrites"].values()) == 2
    assert len(bank) == 5 and report["synthesised"] == 3
    assert all(not check_template(b["template"]) for b in bank)


def test_no_valid_rewrite_is_a_user_error():
    cfg = TemplateJobConfig(rewriter="llm", embedder=TINY, clusters=2)
    with pytest.raises(Exception, match="no valid template"):
        build_bank(cfg, ["a", "b"], rewriter=lambda prompt: "gibberish")
