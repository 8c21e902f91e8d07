"""node_main.run, the main loop of every node: Ctrl-C racing the executor is a clean stop."""

import signal
import subprocess
import sys
import time

import pytest
from conftest import node_command

RACE = """
import sys

import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.waitable import NumberOfEntities, Waitable

from lsi_ros.ros import node_main


class ShutdownWhileBuildingTheWaitSet(Waitable):
    # The executor enters each waitable after checking that the context is alive and before it
    # builds the wait set: shutting down here is the SIGINT handler landing in that window.
    def __init__(self):
        super().__init__(ReentrantCallbackGroup())

    def __enter__(self):
        rclpy.try_shutdown()

    def __exit__(self, *exc):
        return None

    def is_ready(self, wait_set):
        return False

    def take_data(self):
        return None

    async def execute(self, taken_data):
        return None

    def get_num_entities(self):
        return NumberOfEntities()

    def add_to_wait_set(self, wait_set):
        return None


def factory():
    node = Node("shutdown_race_probe")
    node.add_waitable(ShutdownWhileBuildingTheWaitSet())
    return node


sys.exit(node_main.run(factory))
"""


def test_shutdown_between_the_alive_check_and_the_wait_set_exits_cleanly(tmp_path):
    """Seen in make test: bag_recorder exited 1 on SIGINT with RCLError "the given context is not
    valid" (rclpy's spin checks ok(), then builds a wait set on the context the handler shut down)."""
    script = tmp_path / "race.py"
    script.write_text(RACE)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "RCLError" not in done.stderr


@pytest.mark.parametrize("delay_s", [0.3, 1.0, 2.5])
def test_ctrl_c_at_any_moment_of_start_up_exits_cleanly(delay_s):
    """SIGINT while the node still imports torch, while rclpy starts, or once it spins: exit 0, no
    traceback."""
    process = subprocess.Popen(
        node_command("latent_encoder", "-p", "model:=m128"), stderr=subprocess.PIPE, text=True
    )
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
