"""The policy server alone, e.g. on a GPU machine serving an arm elsewhere (docs/remote_policy.md).

GPU machine (address 192.168.1.20; the robot machine is 192.168.1.10):

    python -m smolvla_policy.dds_profiles --address 192.168.1.20 --peers 192.168.1.10 -o gpu_udp.xml
    ros2 launch smolvla_policy policy_server.launch.py checkpoint:=/path/to/finetuned_smolvla device:=cuda \
        dds_profile:=$PWD/gpu_udp.xml

Robot machine: the same with ``--address 192.168.1.10 --peers 192.168.1.20`` and ``dds_profile:=`` on its
launch (real_arm / sim_demo), the same ROS_DOMAIN_ID on both. ``dds_profile`` also sets
ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT so that rmw_fastrtps leaves discovery to the profile (no
multicast). The default profile is shared memory only (one machine). The action queue's
``observation_image_size:=auto`` and ``observation_jpeg_quality`` make observations compact.
"""

from launch import LaunchDescription

from smolvla_policy.launch_common import (
    dds_profile,
    launch_description,
    policy_arguments,
    policy_server_node,
)


def generate_launch_description() -> LaunchDescription:
    return launch_description([*policy_arguments(), *dds_profile(), policy_server_node()])
