"""DDS of a ROS process started here listens on 127.0.0.1 only (config/fastdds_localhost.xml).

A node runs in its own process; its sockets are listed with psutil. In LOCALHOST discovery mode
rmw_fastrtps appends an unrestricted UDP transport of its own after the profile's (send sockets on
0.0.0.0 and the LAN address); the profile makes Fast DDS refuse it, so no socket at all is bound
outside 127.0.0.1. Without the profile, the RTPS ports themselves are open on every interface.
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


def node_sockets(env: dict, received=None) -> list:
    """The inet sockets of a latent_source process once its DDS participant is up; with ``received``
    (a callable), once the node's codes reach a peer, so the sockets cover a matched exchange."""
    process = subprocess.Popen(node_command("latent_source", "-p", "rate_hz:=5.0"), env=env)
    try:
        handle = psutil.Process(process.pid)
        assert wait_for(lambda: len(handle.net_connections(kind="inet")) >= 3, timeout=30), "no DDS sockets"
        if received is not None:
            assert wait_for(received, timeout=30), "no latent code reached a peer on loopback"
        time.sleep(2.0)  # discovery opens its send channels within the first announcements
        return handle.net_connections(kind="inet")
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_ros_sockets_listen_on_loopback_only(ros_context, spin):
    from rclpy.node import Node

    from lsi_ros.msg import LatentCode
    from lsi_ros.ros import qos

    profile = os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert Path(profile).name == "fastdds_localhost.xml" and Path(profile).is_file()
    peer = Node("loopback_peer", context=ros_context)
    codes = []
    peer.create_subscription(LatentCode, "latent", codes.append, qos.RELIABLE)
    spin(peer)
    sockets = node_sockets(dict(os.environ), received=lambda: codes)
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    outside = [s.laddr for s in sockets if s.laddr.ip != LOOPBACK]
    assert not outside, f"sockets bound outside {LOOPBACK}: {outside}"
    assert any(s.laddr.ip == LOOPBACK and s.laddr.port not in ephemeral_ports() for s in sockets)

    without_profile = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    bare = node_sockets(without_profile)
    assert any(s.laddr.ip == "0.0.0.0" and s.laddr.port not in ephemeral_ports() for s in bare), (
        "without the profile DDS listens on every interface (what the profile is for)"
    )
