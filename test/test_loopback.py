"""DDS of a ROS process started here listens on 127.0.0.1 only (config/fastdds_localhost.xml).

A node runs in its own process; its sockets are listed with psutil. rmw_fastrtps in LOCALHOST
discovery mode adds a UDP transport of its own after the profile's, and that transport's send
sockets (ephemeral ports) are the only ones left outside loopback: nothing receives there on an
RTPS port. Without the profile, the RTPS ports themselves are open on every interface.
"""

import os
import subprocess
import time
from pathlib import Path

import psutil
from conftest import node_command, wait_for

LOOPBACK = "127.0.0.1"


def ephemeral_ports() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def node_sockets(env: dict) -> list:
    """The inet sockets of a latent_source process once its DDS participant is up."""
    process = subprocess.Popen(node_command("latent_source", "-p", "rate_hz:=5.0"), env=env)
    try:
        handle = psutil.Process(process.pid)
        assert wait_for(lambda: len(handle.net_connections(kind="inet")) >= 3, timeout=30), "no DDS sockets"
        time.sleep(2.0)  # discovery opens its send channels within the first announcements
        return handle.net_connections(kind="inet")
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_ros_sockets_listen_on_loopback_only():
    profile = os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert Path(profile).name == "fastdds_localhost.xml" and Path(profile).is_file()
    sockets = node_sockets(dict(os.environ))
    outside = [s.laddr for s in sockets if s.laddr.ip != LOOPBACK]
    assert all(address.port in ephemeral_ports() for address in outside), outside
    assert len(outside) <= 2, f"more than rmw's LOCALHOST send sockets outside loopback: {outside}"
    assert any(s.laddr.ip == LOOPBACK and s.laddr.port not in ephemeral_ports() for s in sockets)

    without_profile = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    bare = node_sockets(without_profile)
    assert any(s.laddr.ip == "0.0.0.0" and s.laddr.port not in ephemeral_ports() for s in bare), (
        "without the profile DDS listens on every interface (what the profile is for)"
    )
