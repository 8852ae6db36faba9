"""Build a caption-template bank from benchmark captions, the paper's way (see pipelines/README.md).

    python pipelines/build_templates.py --config configs/dataset/templates.yaml \
        'benchmarks=[/data/CUHK-PEDES, /data/ICFG-PEDES, /data/RSTPReid]' output=s3://bucket/templates.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gadms.cli import config_arg_parser, run_main  # noqa: E402
from gadms.config import load_config  # noqa: E402
from gadms.errors import UserError  # noqa: E402
from pipelines.dataset.template_bank import TemplateJobConfig, benchmark_captions, build_bank, write_bank  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = config_arg_parser(__doc__.splitlines()[0], default_config="configs/dataset/templates.yaml").parse_args(argv)
    cfg = load_config(TemplateJobConfig, args.config, args.overrides)
    if not cfg.benchmarks or not cfg.output:
        raise UserError("benchmarks and output: both must be set")
    bank, report = build_bank(cfg, benchmark_captions(cfg.benchmarks, cfg.split))
    write_bank(cfg.output, bank)
    print(json.dumps({**report, "output": cfg.output}, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
