"""The policy server alone, e.g. on a GPU machine serving an arm elsewhere.

ros2 launch smolvla_policy policy_server.launch.py checkpoint:=/path/to/finetuned_smolvla device:=cuda
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _config(name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("smolvla_policy"), "config", name)


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    return LaunchDescription(
        [
            DeclareLaunchArgument("backend", default_value="smolvla", description="policy backend"),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="lerobot/smolvla_base",
                description="SmolVLA checkpoint directory or hub id",
            ),
            DeclareLaunchArgument("device", default_value="auto", description="cpu | cuda | mps | auto"),
            DeclareLaunchArgument("dtype", default_value="float32", description="float32 | bfloat16"),
            DeclareLaunchArgument("default_task", default_value="", description="task for goals without one"),
            Node(
                package="smolvla_policy",
                executable="policy_server",
                name="policy_server",
                parameters=[
                    _config("policy_server.yaml"),
                    {
                        "backend": arg("backend"),
                        "checkpoint": arg("checkpoint"),
                        "device": arg("device"),
                        "dtype": arg("dtype"),
                        "default_task": arg("default_task"),
                    },
                ],
            ),
        ]
    )
