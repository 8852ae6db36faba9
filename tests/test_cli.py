"""Entry points: user errors become one line and exit 2; secrets never reach a log line."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gadms.cli import RedactSecrets, run_main, setup_logging
from gadms.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], restore_root_logger):
    def main(argv):
        raise UserError("data/x.json: record 3: empty caption\n(second line)")

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: data/x.json: record 3: empty caption (second line)\n"


def test_bugs_keep_their_traceback(restore_root_logger):
    def main(argv):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_main(main, [])


def test_status_of_main_is_the_exit_status(restore_root_logger):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda argv: 3, [])
    assert exit_info.value.code == 3


def test_secret_values_are_redacted_from_log_records(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-123")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "connecting with %s and %d", ("s3cr3t-value-123", 5), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "connecting with *** and 5"


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_setup_logging_installs_one_redacting_handler(monkeypatch, capsys, restore_root_logger):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok-abcdef")
    setup_logging("INFO")
    setup_logging("INFO")  # idempotent: a second call does not duplicate lines
    logging.getLogger("gadms.test").info("token=%s", "tok-abcdef")
    err = capsys.readouterr().err
    assert err.count("token=***") == 1 and "tok-abcdef" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "no/such.yaml"], "no/such.yaml: config file not found"),
        (["num_cpus=0"], "num_cpus: Input should be greater than or equal to 1 (got 0)"),
        (["storage=gcs"], "storage: Input should be 's3' or 'local'"),
    ],
)
def test_demo_entry_point_reports_config_errors_in_one_line(args: list[str], expected: str):
    result = subprocess.run(
        [sys.executable, "-m", "gadms.demo", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_log_level_option_applies_itself(restore_root_logger):
    from gadms.cli import config_arg_parser

    config_arg_parser("x").parse_args(["--log-level", "warning"])
    assert logging.getLogger().level == logging.WARNING
    with pytest.raises(SystemExit):
        config_arg_parser("x").parse_args(["--log-level", "loud"])
