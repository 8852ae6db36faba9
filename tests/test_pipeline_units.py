"""Unit tests of the WebPerson pipeline stages (no Ray): vocabulary, URL safety, downloads against the
misbehaving server, decoding, detection rules, prompts and verdict parsing, guided decoding, caption
checks, templates, the commit protocol and resume state."""

from __future__ import annotations

import ipaddress
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gadms.synth import web_outcomes
from gadms.synth.web_files import decompression_bomb_png, encode_variant
from gadms.testing.http_server import Behaviour
from pipelines.dataset import outcomes
from pipelines.dataset.config import CaptionCheckConfig, DecodeConfig, DetectConfig, DownloadConfig, PoseConfig
from pipelines.dataset.decode import decode_image
from pipelines.dataset.detect import Detection, attach_keypoints, box_verdict, pose_verdict
from pipelines.dataset.download import address_refusal, fetch, image_format, redact_url, robots_refusal
from pipelines.dataset.mllm import ChoiceConstraint
from pipelines.dataset.outcomes import Reason, Rejected
from pipelines.dataset.prompts import VerdictError, caption_prompt, parse_verdict, verdict_choices
from pipelines.dataset.records import OK, clean_orphans, commit_records, read_markers
from pipelines.dataset.stages import Registry
from pipelines.dataset.templates import check_template, draw_templates, load_bank
from pipelines.dataset.validate import check_caption
from pipelines.dataset.finalize import resume_state

LOCAL = DownloadConfig(allow_loopback=True, timeout_s=0.5, connect_timeout_s=0.5, retries=1, backoff_s=0.01)


def test_vocabulary_covers_the_synthetic_corpus_codes():
    for reason in web_outcomes.Reason:
        ours = outcomes.Reason(reason.value)
        assert outcomes.REASON_STAGE[ours].value == web_outcomes.REASON_STAGE[reason].value
    assert {s.value for s in web_outcomes.Stage} <= {s.value for s in outcomes.Stage}


@pytest.mark.parametrize("address, allowed", [
    ("169.254.169.254", False), ("10.0.0.7", False), ("192.168.1.20", False), ("100.64.0.1", False),
    ("::ffff:169.254.169.254", False), ("fe80::1", False), ("fd00:ec2::254", False), ("127.0.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("93.184.216.34", True), ("2606:4700::1111", True),
])  # fmt: skip
def test_address_policy(address, allowed):
    assert (address_refusal(ipaddress.ip_address(address), DownloadConfig()) is None) == allowed
    loop = DownloadConfig(allow_loopback=True)
    assert (address_refusal(ipaddress.ip_address("127.0.0.1"), loop) is None)
    assert address_refusal(ipaddress.ip_address("169.254.169.254"), DownloadConfig(allow_private=True, allow_loopback=True))


def test_scheme_and_blocked_hosts_are_refused_before_any_connection():
    for url, reason in [("ftp://x.org/a.jpg", Reason.BAD_SCHEME), ("file:///etc/passwd", Reason.BAD_SCHEME),
                        ("http://169.254.169.254/latest/meta-data/", Reason.BLOCKED_ADDRESS),
                        ("http://[::ffff:169.254.169.254]/", Reason.BLOCKED_ADDRESS),
                        ("http://127.0.0.1:9/a.jpg", Reason.BLOCKED_ADDRESS)]:  # fmt: skip
        with pytest.raises(Rejected) as err:
            fetch(url, DownloadConfig(), resolver=lambda h, p: pytest.fail("no DNS for refused URLs"))
        assert err.value.reason == reason
    # a host name resolving to a private address is refused (no second lookup can rebind it)
    with pytest.raises(Rejected) as err:
        fetch("http://intranet.example/a.jpg", DownloadConfig(), resolver=lambda h, p: ["93.184.216.34", "10.1.2.3"])
    assert err.value.reason == Reason.BLOCKED_ADDRESS


def test_redaction_and_robots_and_magic():
    assert redact_url("https://user:secret@host.org:8080/a.jpg?x=1") == "https://host.org:8080/a.jpg?x=1"
    assert robots_refusal(["noindex, noai"]) and robots_refusal(["otherbot: noimageai"])
    assert robots_refusal(["noindex, nofollow"]) is None
    assert image_format(b"\xff\xd8\xff\xe0xx") == "jpeg" and image_format(b"RIFF1234WEBPVP8 ") == "webp"
    assert image_format(b'{"error": 1}') is None


def _jpeg(size=(200, 300)) -> bytes:
    return encode_variant(Image.new("RGB", size, (90, 30, 200)), "jpeg")[0]


def test_download_against_the_misbehaving_server(http_root, http_server):
    (http_root / "ok.jpg").write_bytes(_jpeg())
    (http_root / "fake.jpg").write_bytes(b'{"error": "rate limit"}')
    (http_root / "page.html").write_text("<html></html>")
    (http_root / "big.jpg").write_bytes(_jpeg() + b"\0" * 5000)
    http_server.set_behaviour("/moved", Behaviour(redirect_to="/ok.jpg"))
    http_server.set_behaviour("/loop", Behaviour(redirect_loop=True))
    http_server.set_behaviour("/to-metadata", Behaviour(redirect_to="http://169.254.169.254/latest/"))
    http_server.set_behaviour("/err", Behaviour(status=500))
    http_server.set_behaviour("/gone", Behaviour(status=404))
    http_server.set_behaviour("/slow.jpg", Behaviour(delay_s=2.0))
    http_server.set_behaviour("/cut.jpg", Behaviour(truncate_at=100))
    (http_root / "slow.jpg").write_bytes(_jpeg())
    (http_root / "cut.jpg").write_bytes(_jpeg())
    http_server.set_behaviour("/noai.jpg", Behaviour(headers={"X-Robots-Tag": "noai"}))
    (http_root / "noai.jpg").write_bytes(_jpeg())
    got = fetch(http_server.url("/moved"), LOCAL)
    assert got.redirects == 1 and image_format(got.body) == "jpeg"
    cases = {"/loop": Reason.TOO_MANY_REDIRECTS, "/to-metadata": Reason.BLOCKED_ADDRESS, "/err": Reason.HTTP_500,
             "/gone": Reason.HTTP_404, "/slow.jpg": Reason.TIMEOUT, "/cut.jpg": Reason.TRUNCATED,
             "/noai.jpg": Reason.ROBOTS_NOAI, "/fake.jpg": Reason.NOT_IMAGE_BYTES,
             "/page.html": Reason.NOT_IMAGE_CONTENT_TYPE}  # fmt: skip
    for path, reason in cases.items():
        with pytest.raises(Rejected) as err:
            fetch(http_server.url(path), LOCAL)
        assert err.value.reason == reason, (path, err.value)
    assert http_server.request_count("/err") == 2  # one retry, then the reason
    with pytest.raises(Rejected) as err:
        fetch(http_server.url("/big.jpg"), LOCAL.model_copy(update={"max_body_bytes": 2048}))
    assert err.value.reason == Reason.TOO_LARGE
    with pytest.raises(Rejected) as err:  # loopback is refused unless the config allows it
        fetch(http_server.url("/ok.jpg"), DownloadConfig())
    assert err.value.reason == Reason.BLOCKED_ADDRESS


def test_decode_modes_limits_and_orientation():
    cfg = DecodeConfig()
    scene = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8))
    for variant in ("png_16bit", "cmyk_jpeg", "palette_png", "rgba_png", "animated_gif", "animated_webp", "grayscale_jpeg"):
        image = decode_image(encode_variant(scene, variant)[0], cfg)
        assert image.mode == "RGB" and image.size == (200, 300), variant
    grey16 = decode_image(encode_variant(scene, "png_16bit")[0], cfg)
    assert np.asarray(grey16).mean() < 250  # scaled, not clipped to white
    assert decode_image(encode_variant(scene, "exif_rotated")[0], cfg).size == (200, 300)
    with pytest.raises(Rejected) as err:
        decode_image(decompression_bomb_png(), cfg)
    assert err.value.reason == Reason.DECOMPRESSION_BOMB
    data = encode_variant(scene, "png")[0]
    for blob, reason in [(data[: len(data) // 2], Reason.DECODE_ERROR), (_jpeg((40, 30)), Reason.TOO_SMALL),
                         (_jpeg((1600, 200)), Reason.EXTREME_ASPECT)]:  # fmt: skip
        with pytest.raises(Rejected) as err:
            decode_image(blob, cfg)
        assert err.value.reason == reason


def _person(box, visible=range(17), score=0.95):
    kp = np.zeros((17, 3), np.float32)
    kp[list(visible), 2] = 1.0
    return Detection(box, score, kp)


def test_box_and_pose_rules_are_the_papers():
    cfg, pose = DetectConfig(), PoseConfig()
    box = (10, 10, 110, 310)  # 100 x 300: short side 100, width/height 1/3
    assert box_verdict(_person(box), cfg) is None
    assert box_verdict(_person(box, score=0.85), cfg) == "low_score"  # strictly above 0.85
    assert box_verdict(_person((0, 0, 89, 250)), cfg) == "too_small"
    assert box_verdict(_person((0, 0, 90, 360)), cfg) is None and box_verdict(_person((0, 0, 90, 180)), cfg) is None
    assert box_verdict(_person((0, 0, 200, 300)), cfg) == "bad_aspect"
    assert box_verdict(_person((0, 0, 100, 420)), cfg) == "bad_aspect"
    assert pose_verdict(_person(box), pose, 0.5) is None
    assert pose_verdict(_person(box, visible=range(7)), pose, 0.5) == "keypoints"
    assert pose_verdict(_person(box, visible=[0, 1, 2, 5, 6, 7, 8, 9, 10, 13]), pose, 0.5) == "hips"
    assert pose_verdict(_person(box, visible=[0, 5, 6, 7, 8, 9, 10, 11, 12]), pose, 0.5) == "head"


def test_yolo_boxes_get_the_overlapping_pose():
    kp = np.ones((17, 3), np.float32)
    dets = attach_keypoints([((0, 0, 50, 150), 0.9), ((200, 0, 260, 150), 0.95)], [((202, 2, 258, 149), kp)])
    assert dets[0].keypoints[:, 2].sum() == 0 and dets[1].keypoints[:, 2].sum() == 17


def test_verdict_parsing_is_strict():
    ok = parse_verdict('```json\n{"single_person": true, "real_person": true, "clearly_visible": true, "good_quality": true}\n```')
    assert ok.passed and ok.reason is None
    bad = parse_verdict('{"single_person": true, "real_person": false, "clearly_visible": false, "good_quality": true}')
    assert bad.reason == Reason.FILTER_NOT_REAL_PERSON
    for text in ["yes", "{}", '{"single_person": "yes", "real_person": true, "clearly_visible": true, "good_quality": true}',
                 '{"single_person": true, "real_person": true, "clearly_visible": true, "good_quality": true, "x": 1}',
                 "[true, true]"]:  # fmt: skip
        with pytest.raises(VerdictError):
            parse_verdict(text)
    assert len(set(verdict_choices())) == 16 and all(parse_verdict(c) for c in verdict_choices())


def test_choice_constraint_only_spells_allowed_answers():
    class Tok:  # a character-level tokenizer: one id per character, EOS = 0
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    import torch

    constraint = ChoiceConstraint(Tok(), ["yes", "yet", "no"], eos_token_id=0, prompt_length=2)
    assert constraint.allowed(()) == [ord("n"), ord("y")]
    assert constraint.allowed(tuple(map(ord, "ye"))) == [ord("s"), ord("t")]
    assert constraint.allowed(tuple(map(ord, "no"))) == [0]
    scores = torch.zeros(1, 200)
    masked = constraint(torch.tensor([[5, 5, ord("y")]]), scores)
    assert torch.isfinite(masked).nonzero()[:, 1].tolist() == [ord("e")]


def test_caption_checks():
    cfg = CaptionCheckConfig()
    good = "A woman with long brown hair wears a red coat, black trousers and white shoes."
    assert check_caption("  " + good + " ", cfg) == good
    cases = {"": Reason.CAPTION_EMPTY, "A [gender] wears a red coat and blue jeans and black shoes.": Reason.CAPTION_PLACEHOLDER,
             "Sure, here is a description of a man in a red coat and jeans.": Reason.CAPTION_BOILERPLATE,
             "I'm sorry, but I cannot describe people in images for you today.": Reason.CAPTION_BOILERPLATE,
             "Ein Mann trägt eine rote Jacke, schwarze Hosen und weiße Schuhe, größer.": Reason.CAPTION_NOT_ENGLISH,
             "ĠtheĠ Ġman# ĠwearsĠ @@ Ġred## ĠcoatĠ ## Ġand ĠĠ ##.": Reason.CAPTION_NOT_ENGLISH,
             "A man in a red coat.": Reason.CAPTION_TOO_SHORT,
             "A man with short hair wears a red coat, blue jeans and black shoes while": Reason.CAPTION_TRUNCATED,
             "A man in a red coat and blue jeans stands in front of a tall building.": Reason.CAPTION_BACKGROUND,
             " ".join(["A man wears a red coat"] * 20) + ".": Reason.CAPTION_TOO_LONG}  # fmt: skip
    for text, reason in cases.items():
        with pytest.raises(Rejected) as err:
            check_caption(text, cfg)
        assert err.value.reason == reason, text
    with pytest.raises(Rejected) as err:
        check_caption(good, cfg, finish_reason="length")
    assert err.value.reason == Reason.CAPTION_TRUNCATED


def test_template_bank_and_draws(tmp_path):
    bank = load_bank("pipelines/templates/bank.jsonl")
    assert len(bank) >= 200 and len({t.text for t in bank}) == len(bank)
    a, b = draw_templates(bank, 0, "row7#0")
    assert a.id != b.id and [a, b] == draw_templates(bank, 0, "row7#0")
    prompt = caption_prompt(a.text, 60)
    assert "Sentence Structure Reference: " + a.text in prompt and "fewer than 60 English words" in prompt
    assert check_template("A [gender] wears [colored top] and [colored top].")  # repeated placeholder
    bad = tmp_path / "bank.jsonl"
    bad.write_text('{"id": "a", "template": "A [gender] in [colored top]."}\n{"id": "b", "template": "no placeholders"}\n')
    with pytest.raises(Exception, match=r"bank.jsonl:2"):
        load_bank(str(bad))


def test_registry_earliest_wins_and_respects_earlier_runs():
    rows = [{"id": str(i), "status": OK, "url_sha": u} for i, u in enumerate(["a", "b", "a", "c"])]
    rows.append({"id": "1", "status": OK, "url_sha": "z"})
    out = Registry("url", seed={"c": "9"}, check_ids=True)(rows)
    assert [(r["status"], r.get("reason"), r.get("duplicate_of")) for r in out] == [
        ("ok", None, None), ("ok", None, None), ("rejected", "duplicate_url", "0"),
        ("rejected", "duplicate_url", "9"), ("rejected", "duplicate_id", None)]  # fmt: skip
    again = Registry("url", seed={"a": "0"})([{"id": "0", "status": OK, "url_sha": "a"}])
    assert again[0]["status"] == OK  # a resumed row is not a duplicate of itself


def _crop(rid, crop, status=OK, reason=None, n=2):
    row = {"id": rid, "url": f"http://x/{rid}", "crop": crop, "num_crops": n, "status": status, "image": b"jpg",
           "caption1": "c1", "caption2": "c2", "url_sha": f"u{rid}", "content_sha": f"c{rid}", "busy": json.dumps({"pose": 0.5})}
    if status != OK:
        row.update(stage="mllm_filter" if crop is not None else "download", reason=reason, detail="")
        if crop is None:  # rejected at download: no content was fetched
            row["content_sha"] = None
    return row


def test_commit_is_atomic_idempotent_and_resumable(tmp_path):
    out = str(tmp_path / "out")
    rows = [_crop("1", 0), _crop("1", 1, "rejected", "filter_not_visible"), _crop("2", None, "rejected", "http_404")]
    first = commit_records(out, "final", rows, "precomputed", "m")
    again = commit_records(out, "final", list(reversed(rows)), "precomputed", "m")  # a retried task
    assert first["key"] == again["key"] and first["kept"] == 1 and first["rejected"] == 2
    markers = read_markers(out)
    assert len(markers) == 1 and pq.read_table(f"{out}/{first['files']['data']}").num_rows == 1
    (tmp_path / "out" / "data" / "part-orphan.parquet").write_bytes(b"half")  # a killed task's file
    (tmp_path / "out" / "data" / ".tmp-x-part-1.parquet.tmp").write_bytes(b"tmp")  # a killed write
    removed = clean_orphans(out, markers)
    assert len(removed) == 2 and len(list((tmp_path / "out" / "data").iterdir())) == 1
    state = resume_state(out, markers)
    assert state.done_rows == {"1", "2"} and state.done_crops == {"1#0", "1#1"}
    assert state.url_owners == {"u1": "1", "u2": "2"} and state.content_owners == {"c1": "1"}
    partial = commit_records(str(tmp_path / "o2"), "filter", [_crop("5", 1, "rejected", "filter_poor_quality", n=3)], "p", "m")
    st = resume_state(str(tmp_path / "o2"), read_markers(str(tmp_path / "o2")))
    assert partial["rejected"] == 1 and st.done_rows == set() and st.done_crops == {"5#1"}


def test_torchvision_keypoint_rcnn_code_path_and_missing_yolo():
    from gadms.errors import UserError
    from pipelines.dataset.detect import TorchvisionDetector, YoloDetector, build_detector

    detector = TorchvisionDetector(DetectConfig(random_init=True, min_size=64, max_people=3))
    out = detector.detect([Image.new("RGB", (64, 96), (120, 60, 30))], [{}])
    assert len(out) == 1 and all(d.keypoints.shape == (17, 3) for d in out[0])
    with pytest.raises(UserError, match="detect.weights"):
        build_detector(DetectConfig(backend="torchvision"), "persons")
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="AGPL"):
            YoloDetector(DetectConfig(backend="yolo", weights="a.pt", pose_weights="b.pt"))
