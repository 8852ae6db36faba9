"""One smoke-size synthetic world per test session, shared by the synth and reader tests.

Test modules use the `smoke_world` fixture defined here through `from synth_world import smoke_world`
(pytest puts tests/ on sys.path). The world is generated once per session, whichever module asks first.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from gadms.synth.attributes import Identity
from gadms.synth.config import SynthConfig, load_synth_config
from gadms.synth.generate import generate_world

_WORLD: dict[str, object] = {}


@pytest.fixture(scope="session")
def smoke_config() -> SynthConfig:
    return load_synth_config("smoke")


@pytest.fixture(scope="session")
def smoke_world(tmp_path_factory: pytest.TempPathFactory, smoke_config: SynthConfig) -> Path:
    if "path" not in _WORLD:
        out = tmp_path_factory.mktemp("smoke_world")
        generate_world(smoke_config, str(out))
        _WORLD["path"] = out
    return _WORLD["path"]  # type: ignore[return-value]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_person(**changes: object) -> Identity:
    """A hand-made identity: a man in a red t-shirt, black trousers, white shoes and a blue cap."""
    base = Identity(
        pid=7, gender="man", build="average", top_type="t-shirt", top_colour="red", bottom_type="trousers",
        bottom_colour="black", shoe_colour="white", hair_length="short", hair_colour="brown", headwear="cap",
        headwear_colour="blue", bag="none", bag_colour=None, carried="none", skin=(200, 150, 120),
        top_rgb=(200, 30, 40), bottom_rgb=(25, 25, 30), shoe_rgb=(235, 235, 230), hair_rgb=(90, 55, 30),
        headwear_rgb=(35, 70, 180), bag_rgb=(0, 0, 0), height_scale=1.0,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)
