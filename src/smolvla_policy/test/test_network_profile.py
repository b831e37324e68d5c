"""The two-host UDP profile (issue 17), exercised on loopback only: a policy_server process and a client
process talk PredictChunk over UDP on 127.0.0.1 with shared memory off, inside a network namespace whose only
interface is lo. The namespace's own IP counters prove that nothing was multicast and nothing left lo, and
that the images crossed lo (not shared memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smolvla_policy.dds_profiles import (
    bring_loopback_up,
    ip_counters,
    loopback_only_reason,
    profile_variables,
    udp_peers_profile,
)

REPO = Path(__file__).resolve().parents[3]
PROFILE = REPO / "config" / "fastdds_udp_peers.xml"
sys.path.insert(0, str(REPO / "tools"))


def _body(text: str) -> str:
    return text[text.index("<dds") :]


def test_shipped_loopback_profile_is_the_generated_one():
    assert _body(PROFILE.read_text()) == _body(udp_peers_profile("127.0.0.1", ["127.0.0.1"]))
    body = _body(PROFILE.read_text())
    assert "<type>UDPv4</type>" in body and "SHM" not in body
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in body
    two = udp_peers_profile("192.168.1.20", ["192.168.1.10"])
    assert two.count("<address>192.168.1.20</address>") == 4  # whitelist, metatraffic, default, peer
    assert two.count("<address>192.168.1.10</address>") == 1
    with pytest.raises(ValueError):
        udp_peers_profile("192.168.1", ["192.168.1.10"])


CLIENT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import rclpy
    from sensor_msgs.msg import CompressedImage
    from smolvla_policy.compact_observation import JPEG_FORMAT, encode_jpeg
    from smolvla_policy.server.testing import PolicyClient, camera_images, make_observation, status_name

    client = PolicyClient()
    assert client.action.wait_for_server(timeout_sec=60.0), "no action server over UDP"
    imgs = camera_images(("top", "wrist", "side"), 480, 640, seed=1)
    sent = 0
    for i in range(3):
        obs = make_observation(imgs, timestep=i)
        if i == 2:  # a compressed observation over the same path
            obs.images = []
            obs.compressed_images = [CompressedImage(format=JPEG_FORMAT, data=encode_jpeg(a, 80))
                                     for a in imgs.values()]
        sent += sum(len(m.data) for m in obs.images) + sum(len(m.data) for m in obs.compressed_images)
        status, result = client.result(client.send(obs))
        assert status_name(status) == "succeeded", result.error
        assert len(result.chunk.trajectory.points) == 5
    client.close()
    print("SENT_BYTES", sent)
    """
)


def test_predict_chunk_over_udp_loopback_sends_no_multicast_and_nothing_off_lo(tmp_path):
    reason = loopback_only_reason()
    if reason:
        pytest.skip(reason)
    import ros_harness

    bring_loopback_up()
    env = ros_harness.ros_environment(log_dir=tmp_path)
    for var in ("ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "FASTDDS_BUILTIN_TRANSPORTS"):
        env.pop(var, None)
    env.update(profile_variables(PROFILE))
    before = ip_counters()
    server = ros_harness.NodeProcess(
        "smolvla_policy",
        "policy_server",
        parameters={"backend": "scripted", "backend_options": '{"mode": "hold", "chunk_size": 5}'},
        env=env,
    )
    try:
        assert server.wait_for_output("ready", 60.0), server.output()
        res = subprocess.run(
            [sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr + server.output()
    finally:
        server.stop()
    after = ip_counters()
    sent = int(res.stdout.split("SENT_BYTES")[1].split()[0])
    assert after["OutMcastPkts"] - before["OutMcastPkts"] == 0  # no SPDP multicast
    assert after["other_tx_packets"] == 0  # only lo exists; nothing else sent anything
    # the goals' images crossed lo as UDP (shared memory off): more bytes than the images themselves
    assert after["lo_tx_bytes"] - before["lo_tx_bytes"] > sent > 5_000_000
