"""The `lsi` command: help for newcomers, and the two-process smoke run end to end."""

import json
import subprocess
import sys

from lsi_ros.cli import SUBCOMMANDS, build_parser


def test_every_subcommand_has_help():
    help_text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in help_text


def test_smoke_run_exchanges_latent_codes_between_processes(tmp_path):
    summary_path = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "lsi_ros.cli", "smoke", "--count", "30", "--output", str(summary_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["received"] >= 30 and summary["invalid"] == 0
    assert summary["shapes"] == [[1, 512]]
    assert "LatentCode messages received across processes" in result.stdout
