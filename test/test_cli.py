"""The `lsi` command: help for newcomers, and the two-process smoke run end to end."""

import json
import subprocess
import sys

import pytest

from lsi_ros.cli import SUBCOMMANDS, build_parser

HEAVY = ("torch", "rclpy", "cv2", "numpy", "openvino")
# What `lsi ARGS` imported, from a fresh interpreter: the help must not wait for torch or ROS.
IMPORTED = """
import json, sys
from lsi_ros.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_every_subcommand_has_help():
    help_text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in help_text


def test_help_builds_every_parser_without_heavy_imports():
    modules = imported_by("--help")
    assert {f"lsi_ros.commands.{name}" for name in SUBCOMMANDS} <= modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize("name", ["train", "docs"])
def test_subcommand_help_imports_only_that_subcommand(name):
    modules = imported_by(name, "--help")
    commands = {m for m in modules if m.startswith("lsi_ros.commands.")}
    assert f"lsi_ros.commands.{name}" in commands
    assert not commands - {f"lsi_ros.commands.{name}", "lsi_ros.commands"}
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_train_weight_formats_are_the_model_files():
    from lsi_ros.models.checkpoint import WEIGHT_FORMATS

    train = build_parser(("train",))._subparsers._group_actions[0].choices["train"]
    weight_format = next(a for a in train._actions if a.dest == "weight_format")
    assert tuple(weight_format.choices) == WEIGHT_FORMATS


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


# Training-like steps: each backward frees activations of 16 MiB that the next step takes again.
STEPS = """
import resource, sys
import torch
from lsi_ros.cli import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
torch.set_num_threads(1)
net = torch.nn.Sequential(*[torch.nn.Conv2d(32, 32, 3, padding=1) for _ in range(4)])
images = torch.randn(8, 32, 128, 128)
net(images).square().mean().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    net(images).square().mean().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_lsi_keeps_freed_memory_instead_of_faulting_it_in_again():
    """By default every step maps its large activations afresh (a page fault per 4 KiB); `lsi` reuses them."""

    def page_faults(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120, check=True
        )
        return int(run.stdout.split()[-1])

    default, retained = page_faults("default"), page_faults("retain")
    assert default > 20000
    assert retained < default / 2
