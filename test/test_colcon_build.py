"""The robot path: `colcon build` of this repository gives the messages and the nodes in install/, and
`colcon test` runs the test suite."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


def test_colcon_build_installs_messages_nodes_and_launch_files(tmp_path):
    source = tmp_path / "src" / "lsi_ros"
    shutil.copytree(
        REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "install", "log")
    )
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    env["PATH"] = f"{VENV / 'bin'}:{env['PATH']}"
    result = subprocess.run(
        [
            str(VENV / "bin" / "colcon"),
            "build",
            "--base-paths",
            "src",
            "--event-handlers",
            "console_cohesion-",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=ON",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    install = tmp_path / "install" / "lsi_ros"
    assert os.access(install / "lib" / "lsi_ros" / "latent_source", os.X_OK)
    assert (install / "share" / "lsi_ros" / "launch" / "capture.launch.py").is_file()
    assert (install / "share" / "lsi_ros" / "config" / "smoke.yaml").is_file()
    # `colcon test` runs the pytest suite (ctest's one test; listed here, not run again).
    listed = subprocess.run(
        ["ctest", "-N", "--test-dir", str(tmp_path / "build" / "lsi_ros")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "Test #1: pytest" in listed.stdout and "Total Tests: 1" in listed.stdout, listed.stdout

    site = install / Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    probe = (
        "import lsi_ros.msg, lsi_ros.ros.latent as l; from lsi_ros.msg import LatentCode; "
        "print(lsi_ros.msg.__file__); print(l.__file__); print(LatentCode(shape=[1, 512]).shape[1])"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        env=dict(env, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    msg_file, source_file, width = run.stdout.split()
    assert msg_file.startswith(str(site)) and source_file.startswith(str(site)) and width == "512"
