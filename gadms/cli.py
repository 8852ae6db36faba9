"""What every entry point shares: logging setup, `--config` + overrides parsing, one-line errors.

An entry point looks like

    def main(argv: list[str] | None = None) -> int:
        args = config_arg_parser("what it does", default_config="configs/x.yaml").parse_args(argv)
        cfg = load_config(MyJobConfig, args.config, args.overrides)
        ...
        return 0

    if __name__ == "__main__":
        run_main(main)

`run_main` turns a `UserError` (bad config field, missing input path, bad data) into one line on
stderr and exit status 2; anything else is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from gadms.errors import UserError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVEL_ENV = "GADMS_LOG_LEVEL"
EXIT_USER_ERROR = 2

# Environment variables whose values must never reach a log line, whatever code logs them.
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "HF_TOKEN")


class RedactSecrets(logging.Filter):
    """Replaces the values of credential environment variables in log records with '***'."""

    def __init__(self, names: Sequence[str] = SECRET_ENV_VARS) -> None:
        super().__init__()
        self.names = tuple(names)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [os.environ[n] for n in self.names if len(os.environ.get(n, "")) >= 4]
        if secrets:
            message = record.getMessage()
            redacted = message
            for secret in secrets:
                redacted = redacted.replace(secret, "***")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def setup_logging(level: str | int | None = None, only: str | None = None) -> None:
    """One format and level for all jobs; level from the argument, else $GADMS_LOG_LEVEL, else INFO.

    `only="gadms"` configures just our loggers, leaving the host's (e.g. inside Ray workers, whose
    root logger Ray owns) as they are.
    """
    level = level or os.environ.get(LOG_LEVEL_ENV, "INFO")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger(only)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if only:
        logger.propagate = False


def config_arg_parser(description: str, default_config: str | None = None) -> argparse.ArgumentParser:
    """A parser with `--config FILE`, `--log-level` and trailing `key.sub=value` overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        default=default_config,
        help=f"YAML config file (default: {default_config})" if default_config else "YAML config file",
    )
    parser.add_argument(
        "--log-level", action=_SetLogLevel, default=None, help="DEBUG, INFO, WARNING, ... (default INFO)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. optim.lr=1e-4"
    )
    return parser


class _SetLogLevel(argparse.Action):
    """Applies `--log-level` as soon as it is parsed, so no entry point has to remember to."""

    def __call__(self, parser, namespace, value, option_string=None):  # type: ignore[no-untyped-def]
        level = str(value).upper()
        if level not in logging.getLevelNamesMapping():
            parser.error(f"--log-level: unknown level {value!r} (DEBUG, INFO, WARNING, ERROR)")
        logging.getLogger().setLevel(level)
        setattr(namespace, self.dest, level)


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run an entry point: set up logging, print user errors as one line, exit with its status."""
    setup_logging()
    try:
        status = main(argv)
    except UserError as err:
        print(f"error: {single_line(str(err))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)


def single_line(text: str) -> str:
    return " ".join(text.split())
