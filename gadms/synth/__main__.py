"""`python -m gadms.synth --size smoke|demo --out DIR`: generate a synthetic person world offline.

Examples:
    python -m gadms.synth --size smoke --out outputs/synth
    python -m gadms.synth --size demo --out outputs/demo --seed 3 --noise-rate 0.3
    python -m gadms.synth --size demo --out outputs/demo --webperson-out s3://bucket/webperson
    python -m gadms.synth --config my_world.yaml --out outputs/mine cuhk.ids.train=500
The web corpus's URLs use --base-url (default from the profile, http://127.0.0.1:8000); a test
server on another port can be pointed at with gadms.synth.web_corpus.rebase_web_corpus.
"""

from __future__ import annotations

import json
import logging

from gadms.cli import config_arg_parser, run_main
from gadms.synth.config import load_synth_config
from gadms.synth.generate import generate_world

log = logging.getLogger("gadms.synth")


def main(argv: list[str] | None = None) -> int:
    parser = config_arg_parser(
        "Generate a synthetic person world: benchmark-format datasets, WebPerson Parquet, a web corpus."
    )
    add = parser.add_argument
    add("--size", default=None, help="profile in configs/synth/ (smoke, demo); default smoke unless --config")
    add("--out", required=True, help="output folder or s3:// prefix")
    add("--seed", type=int, default=None, help="world seed (same seed, same bytes)")
    add("--noise-rate", type=float, default=None, help="probability that a WebPerson caption gets noise")
    add("--base-url", default=None, help="URL the web corpus folder will be served at")
    add("--webperson-out", default=None, help="where the WebPerson shards go (default <out>/webperson)")
    add("--overwrite", action="store_true", help="replace a world already generated in --out")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    for key, value in (("seed", args.seed), ("noise.rate", args.noise_rate), ("web.base_url", args.base_url),
                       ("webperson.output", args.webperson_out)):  # fmt: skip
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # JSON is valid YAML: strings stay strings
    size = args.size if args.size or args.config else "smoke"
    cfg = load_synth_config(size, args.config, overrides)
    result = generate_world(cfg, args.out, overwrite=args.overwrite)
    timings = result["timings_s"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
    log.info("done in %.1f s (%s)", timings["total"], parts)
    summary = {
        "out": args.out,
        "datasets": [{d["name"]: d["splits"]} for d in result["datasets"]],
        "web_rows": (result["web_corpus"] or {}).get("rows"),
        "timings_s": timings,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
