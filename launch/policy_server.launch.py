"""The policy server alone, e.g. on a GPU machine serving an arm elsewhere.

    ros2 launch smolvla_policy policy_server.launch.py checkpoint:=/path/to/finetuned_smolvla device:=cuda

Pass ``dds_profile:=<your profile>`` with a transport that reaches the arm's machine (the default profile is
shared memory only).
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
