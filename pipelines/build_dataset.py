"""Build a WebPerson-style dataset from web image tables (Ray Data; see pipelines/README.md).

    python pipelines/build_dataset.py --config configs/dataset/paper.yaml \
        input=s3://bucket/coyo/ output=s3://bucket/webperson/
    ray job submit --working-dir . -- python pipelines/build_dataset.py --config ... input=... output=...

Prints the run's accounting as JSON; exit status 0 when every input row is accounted for, 3 when not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (also under `ray job submit --working-dir .`): use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gadms.cli import config_arg_parser, run_main  # noqa: E402
from gadms.config import load_config  # noqa: E402
from pipelines.dataset.config import DatasetJobConfig  # noqa: E402

EXIT_INCOMPLETE = 3


def main(argv: list[str] | None = None) -> int:
    parser = config_arg_parser(__doc__.splitlines()[0], default_config="configs/dataset/paper.yaml")
    args = parser.parse_args(argv)
    cfg = load_config(DatasetJobConfig, args.config, args.overrides)
    from pipelines.dataset.job import run_job

    stats = run_job(cfg)
    summary = {k: stats[k] for k in ("input_rows", "kept_rows", "rejected_rows", "accounted_rows", "complete",
                                     "kept_crops", "captions", "shards", "data")}  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0 if stats["complete"] else EXIT_INCOMPLETE


if __name__ == "__main__":
    run_main(main)
