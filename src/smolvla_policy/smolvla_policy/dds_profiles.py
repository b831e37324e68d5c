"""Fast DDS profiles for the policy on another machine (issue 17): UDPv4 unicast to configured peers, no
multicast, no shared memory. No rclpy.

``config/fastdds_udp_peers.xml`` is the loopback instance (tests, benchmarks); for two hosts write one per
machine::

    python -m smolvla_policy.dds_profiles --address 192.168.1.20 --peers 192.168.1.10 -o robot_udp.xml

and launch both sides with ``dds_profile:=<that file>`` (docs/remote_policy.md). rmw_fastrtps (Kilted) must
be told to leave discovery to the profile: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT``, else it still
announces the participant to the multicast group 239.255.0.1 (measured: 7 SPDP packets per process in 3 s);
:func:`profile_variables` and the launch files set it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
DISCOVERY_RANGE = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "SYSTEM_DEFAULT")
#: Variables that would override the profile's transports or discovery.
OVERRIDING = ("ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "FASTDDS_BUILTIN_TRANSPORTS", "ROS_DISCOVERY_SERVER")

DEFAULT_BUFFER = 4 * 1024 * 1024
DEFAULT_PEERS_RANGE = 32


def _locator(address: str, indent: str) -> str:
    lines = ["<locator>", "  <udpv4>", f"    <address>{address}</address>", "  </udpv4>", "</locator>"]
    return "".join(f"{indent}{line}\n" for line in lines)


def udp_peers_profile(
    address: str,
    peers: Sequence[str],
    buffer_bytes: int = DEFAULT_BUFFER,
    max_initial_peers_range: int = DEFAULT_PEERS_RANGE,
) -> str:
    """The profile's XML: this machine's ``address`` (the only interface used), initial peers ``peers`` (this
    machine is added when missing), socket buffers ``buffer_bytes``, datagrams of at most 65500 bytes."""
    for a in (address, *peers):
        ipaddress.IPv4Address(a)  # ValueError names the bad address
    if not 65536 <= buffer_bytes <= 1 << 30:
        raise ValueError(f"buffer_bytes {buffer_bytes} is not in 64 KiB..1 GiB")
    if not 1 <= max_initial_peers_range <= 120:
        raise ValueError(f"max_initial_peers_range {max_initial_peers_range} is not in 1..120")
    all_peers = list(dict.fromkeys([address, *peers]))
    peer_xml = "".join(_locator(p, " " * 12) for p in all_peers)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by python -m smolvla_policy.dds_profiles: UDPv4 unicast between {", ".join(all_peers)};
     no multicast, no SHM. Use with ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT (launch sets it). -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>smolvla_udp</transport_id>
        <type>UDPv4</type>
        <sendBufferSize>{buffer_bytes}</sendBufferSize>
        <receiveBufferSize>{buffer_bytes}</receiveBufferSize>
        <maxMessageSize>65500</maxMessageSize>
        <maxInitialPeersRange>{max_initial_peers_range}</maxInitialPeersRange>
        <interfaceWhiteList>
          <address>{address}</address>
        </interfaceWhiteList>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="smolvla_udp_peers" is_default_profile="true">
      <rtps>
        <builtin>
          <metatrafficUnicastLocatorList>
{_locator(address, " " * 12)}          </metatrafficUnicastLocatorList>
          <initialPeersList>
{peer_xml}          </initialPeersList>
        </builtin>
        <defaultUnicastLocatorList>
{_locator(address, " " * 10)}        </defaultUnicastLocatorList>
        <userTransports>
          <transport_id>smolvla_udp</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def profile_variables(profile: str | os.PathLike) -> dict[str, str]:
    """Environment for a process using ``profile``: both profile variables and the discovery range."""
    path = str(Path(profile).resolve())
    return {**dict.fromkeys(PROFILE_VARIABLES, path), DISCOVERY_RANGE[0]: DISCOVERY_RANGE[1]}


# -- loopback-only proof for tests and benchmarks ----------------------------------------------------------
def network_interfaces() -> list[str]:
    """This network namespace's interfaces (/proc/net/dev is per namespace; /sys/class/net may be the
    host's sysfs)."""
    return sorted(
        line.split(":", 1)[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    )


def loopback_only_reason() -> str | None:
    """None when this process is in a network namespace whose only interface is ``lo`` (nothing can leave
    the machine); else why UDP must not be used here."""
    ifaces = network_interfaces()
    if ifaces != ["lo"]:
        return f"network interfaces {ifaces}: run inside `unshare -n` (only lo) for UDP tests"
    return None


def bring_loopback_up() -> None:
    """``ip link set lo up`` in this (private) namespace; raises RuntimeError when it cannot."""
    import subprocess

    reason = loopback_only_reason()
    if reason:
        raise RuntimeError(reason)
    res = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ip link set lo up failed: {res.stderr.strip()}")


def ip_counters() -> dict[str, int]:
    """This namespace's IP counters: OutMcastPkts (netstat IpExt), lo's TX packets/bytes, other interfaces'
    TX packets (sum)."""
    out: dict[str, int] = {}
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("IpExt:"):
            out.update(dict(zip(head.split()[1:], (int(v) for v in vals.split()[1:]))))
    other = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, data = line.split(":", 1)
        f = [int(x) for x in data.split()]
        if name.strip() == "lo":
            out["lo_tx_packets"], out["lo_tx_bytes"] = f[9], f[8]
        else:
            other += f[9]
    out["other_tx_packets"] = other
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smolvla_policy.dds_profiles",
        description="Write a two-host Fast DDS profile (UDPv4 unicast to peers, no multicast, no SHM).",
    )
    parser.add_argument("--address", required=True, help="this machine's IPv4 address (the interface used)")
    parser.add_argument(
        "--peers", required=True, help="comma-separated IPv4 addresses of the other machine(s)"
    )
    parser.add_argument("--buffer-bytes", type=int, default=DEFAULT_BUFFER, help="socket buffer size")
    parser.add_argument("-o", "--output", required=True, help="profile file to write")
    args = parser.parse_args(argv)
    try:
        text = udp_peers_profile(args.address, [p.strip() for p in args.peers.split(",") if p.strip()],
                                 args.buffer_bytes)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp = Path(args.output).with_name(Path(args.output).name + ".partial")
    tmp.write_text(text)
    tmp.replace(args.output)
    print(f"wrote {args.output}; launch both sides with dds_profile:={Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
