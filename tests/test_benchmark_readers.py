"""Benchmark readers: they load the three formats back exactly, and reject bad files with one clear line."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from synth_world import smoke_config, smoke_world  # noqa: F401  (fixtures)

from gadms import storage
from gadms.data.benchmarks import (
    FORMATS, detect_benchmark, read_benchmark, read_cuhk_pedes, read_icfg_pedes, read_rstpreid,
)  # fmt: skip
from gadms.errors import UserError

LAYOUT = {  # folder -> (reader key, annotation file, path field)
    "CUHK-PEDES": ("cuhk-pedes", "reid_raw.json", "file_path"),
    "ICFG-PEDES": ("icfg-pedes", "ICFG-PEDES.json", "file_path"),
    "RSTPReid": ("rstpreid", "data_captions.json", "img_path"),
}


@pytest.mark.parametrize("folder", sorted(LAYOUT))
def test_reader_returns_exactly_what_the_json_says(smoke_world: Path, folder: str) -> None:  # noqa: F811
    key, annotation, path_field = LAYOUT[folder]
    records = json.loads((smoke_world / folder / annotation).read_text())
    benchmark = read_benchmark(smoke_world / folder)
    assert detect_benchmark(smoke_world / folder) == key
    assert list(benchmark.splits) == [s for s in FORMATS[key].splits if any(r["split"] == s for r in records)]
    for name, split in benchmark.splits.items():
        mine = [r for r in records if r["split"] == name]
        assert split.num_images == len(mine)
        assert split.num_ids == len({r["id"] for r in mine})
        assert split.num_captions == sum(len(r["captions"]) for r in mine)
        assert list(split.captions) == [c for r in mine for c in r["captions"]]
        for c, (image_index, pid) in enumerate(zip(split.caption_images, split.caption_pids)):
            record = mine[image_index]
            assert split.captions[c] in record["captions"]
            assert pid == record["id"] == split.image_pids[image_index]
            assert split.image_paths[image_index] == str(smoke_world / folder / "imgs" / record[path_field])
        assert all(Path(p).is_file() for p in split.image_paths)
        labels = split.pid_labels()
        assert sorted(set(labels.tolist())) == list(range(split.num_ids))
        for k in range(split.num_ids):  # one label per person and one person per label
            assert len({p for p, label in zip(split.image_pids, labels) if label == k}) == 1
    report = benchmark.size_report()
    assert len(report) == len(benchmark.splits) and "(published:" in report[0]


def test_named_readers_and_split_access(smoke_world: Path, smoke_config) -> None:  # noqa: F811
    cuhk = read_cuhk_pedes(smoke_world / "CUHK-PEDES")
    assert [cuhk.split(s).num_ids for s in ("train", "val", "test")] == [12, 4, 4]
    icfg = read_icfg_pedes(smoke_world / "ICFG-PEDES")
    assert set(icfg.splits) == {"train", "test"}
    with pytest.raises(UserError, match=r"ICFG-PEDES.json: no 'val' split in ICFG-PEDES \(splits present: "):
        icfg.split("val")
    rstp = read_rstpreid(smoke_world / "RSTPReid")
    test = rstp.split("test")
    assert test.num_images == 5 * test.num_ids and test.num_captions == 2 * test.num_images
    with pytest.raises(UserError, match="unknown benchmark 'market'"):
        read_benchmark(smoke_world / "RSTPReid", "market")


def test_reads_from_s3(smoke_world: Path, s3_bucket: str) -> None:  # noqa: F811
    root = storage.join(s3_bucket, "bench", "RSTPReid")
    for file in sorted((smoke_world / "RSTPReid").rglob("*")):
        if file.is_file():
            relative = str(file.relative_to(smoke_world / "RSTPReid"))
            storage.write_bytes_atomic(storage.join(root, relative), file.read_bytes())
    remote = read_rstpreid(root)
    local = read_rstpreid(smoke_world / "RSTPReid")
    for name in local.splits:
        assert remote.split(name).sizes() == local.split(name).sizes()
        assert remote.split(name).captions == local.split(name).captions
        assert all(p.startswith(root + "/imgs/") for p in remote.split(name).image_paths)
    first_remote, first_local = remote.split("test").image_paths[0], local.split("test").image_paths[0]
    assert storage.read_bytes(first_remote) == Path(first_local).read_bytes()


# --- bad input: small hand-written datasets ------------------------------------------------------


IMAGES = ["CUHK01/0001001.png", "CUHK01/0001002.png", "Market/0002001.jpg"]


def write_dataset(root: Path, annotation: str, records: object, images: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / annotation).write_text(records if isinstance(records, str) else json.dumps(records))
    for image in images:
        (root / "imgs" / image).parent.mkdir(parents=True, exist_ok=True)
        (root / "imgs" / image).write_bytes(b"not decoded by the reader")
    return root


def cuhk(
    split: object = "train", pid: object = 1, path: str = IMAGES[0], captions: object = ("a man.", "a boy.")
) -> dict:
    """One CUHK-PEDES record; arguments may be of the wrong type on purpose."""
    return {"split": split, "captions": list(captions) if isinstance(captions, tuple) else captions,
            "file_path": path, "processed_tokens": [], "id": pid}  # fmt: skip


GOOD = [cuhk(), cuhk(pid=1, path=IMAGES[1]), cuhk("test", 2, IMAGES[2])]
without_captions = {k: v for k, v in GOOD[1].items() if k != "captions"}


def test_hand_written_dataset_loads(tmp_path: Path) -> None:
    benchmark = read_cuhk_pedes(write_dataset(tmp_path / "c", "reid_raw.json", GOOD, IMAGES))
    train = benchmark.split("train")
    assert train.sizes() == (1, 2, 4)
    assert train.caption_images.tolist() == [0, 0, 1, 1]
    assert np.array_equal(train.caption_pids, [1, 1, 1, 1])
    assert benchmark.split("test").image_paths == (str(tmp_path / "c" / "imgs" / "Market/0002001.jpg"),)
    assert set(benchmark.splits) == {"train", "test"}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ("[{\"split\": ", r"reid_raw.json: not valid JSON \(line 1 column 12"),
        ({"annotations": []}, "reid_raw.json: top level must be a list of records, got dict"),
        ([], "reid_raw.json: holds no records"),
        ([*GOOD[:1], "CUHK01/x.png"], "reid_raw.json: record 1: expected an object, got str"),
        ([GOOD[0], without_captions], "record 1: missing field 'captions'"),
        ([GOOD[0], cuhk(pid="7", path=IMAGES[1])], "record 1: field 'id' must be a non-negative integer"),
        ([cuhk(pid=True)], "record 0: field 'id' must be a non-negative integer, got True"),
        ([cuhk(pid=-3)], "record 0: field 'id' must be a non-negative integer, got -3"),
        ([cuhk(split="dev")], r"record 0: unknown split 'dev' \(expected train, val, test\)"),
        ([cuhk(split=["train"])], "record 0: field 'split' must be a string, got list"),
        ([*GOOD, cuhk(captions=("fine", "   "), path="CUHK01/0001003.png")], "record 3: caption 1 is empty"),
        ([cuhk(captions="a man.")], "record 0: field 'captions' must be a non-empty list of strings"),
        ([cuhk(captions=[])], "record 0: field 'captions' must be a non-empty list of strings"),
        ([cuhk(captions=["a man", 3])], "record 0: caption 1 must be a string, got int"),
        ([cuhk(path="")], "record 0: field 'file_path' must be a non-empty string"),
        ([cuhk(path="../../etc/passwd")], "record 0: field 'file_path' must be a path inside imgs/"),
        ([cuhk(path="/abs/x.png")], "record 0: field 'file_path' must be a path inside imgs/"),
        ([*GOOD, cuhk(path=IMAGES[0])], r"record 3: image 'CUHK01/0001001.png' is listed twice \(first in"),
        ([*GOOD, cuhk("val", 2, "CUHK01/x.png")], r"record 3: id 2 is in split 'val' but also in 'test'"),
    ],
)
def test_bad_cuhk_files_give_one_line_errors(tmp_path: Path, records: object, message: str) -> None:
    root = write_dataset(tmp_path / "bad", "reid_raw.json", records, IMAGES)
    with pytest.raises(UserError, match=message) as caught:
        read_cuhk_pedes(root)
    text = str(caught.value)
    assert "\n" not in text and str(root / "reid_raw.json") in text


def test_missing_images_are_reported_with_the_first_record(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "m", "reid_raw.json", GOOD, IMAGES[:1])
    message = r"record 1: image imgs/CUHK01/0001002.png not found \(1 more records have missing images\)"
    with pytest.raises(UserError, match=message):
        read_cuhk_pedes(root)
    assert read_cuhk_pedes(root, check_images=False).split("train").num_images == 2


def test_format_specific_rules(tmp_path: Path) -> None:
    icfg = [{"id": 0, "file_path": "train/0000/a.jpg", "captions": ["a man."], "processed_tokens": [],
             "split": "val"}]  # fmt: skip
    root = write_dataset(tmp_path / "i", "ICFG-PEDES.json", icfg, ["train/0000/a.jpg"])
    with pytest.raises(UserError, match=r"record 0: unknown split 'val' \(expected train, test\)"):
        read_icfg_pedes(root)
    rstp = [{"id": 0, "file_path": "0000_c1_0001.jpg", "captions": ["a", "b"], "split": "train"}]
    root = write_dataset(tmp_path / "r", "data_captions.json", rstp, ["0000_c1_0001.jpg"])
    with pytest.raises(UserError, match="record 0: missing field 'img_path'"):
        read_rstpreid(root)


def test_wrong_or_ambiguous_folders(tmp_path: Path, smoke_world: Path) -> None:  # noqa: F811
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no benchmark annotation file; expected exactly one of reid_raw"):
        read_benchmark(tmp_path / "empty")
    with pytest.raises(UserError, match=r"reid_raw.json: not found \(CUHK-PEDES needs reid_raw.json and"):
        read_cuhk_pedes(smoke_world / "RSTPReid")
    both = tmp_path / "both"
    shutil.copytree(smoke_world / "RSTPReid", both)
    (both / "reid_raw.json").write_text("[]")
    with pytest.raises(UserError, match="several annotation files"):
        detect_benchmark(both)


def test_smoke_split_counts_match_the_config(smoke_world: Path, smoke_config) -> None:  # noqa: F811
    cfg = smoke_config
    for folder, expected in (("CUHK-PEDES", cfg.cuhk.ids), ("RSTPReid", cfg.rstp.ids)):
        benchmark = read_benchmark(smoke_world / folder)
        assert {s: benchmark.split(s).num_ids for s in ("train", "val", "test")} == expected.model_dump()
    icfg = read_benchmark(smoke_world / "ICFG-PEDES")
    assert icfg.split("train").num_ids == cfg.icfg.train_ids
    assert icfg.split("test").num_ids == cfg.icfg.test_ids
    per_id = Counter(icfg.split("train").image_pids.tolist())
    low, high = cfg.icfg.images_per_id
    assert low <= min(per_id.values()) and max(per_id.values()) <= high
