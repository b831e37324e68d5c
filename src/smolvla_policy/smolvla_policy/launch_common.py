"""Pieces shared by the launch files in ``launch/``: the DDS profile, the policy arguments, and the
``policy_server`` and ``action_queue`` nodes. Imported by launch files only (it needs the launch API)."""

from __future__ import annotations

import os
from typing import Any


def config_file(name: str) -> str:
    """Path of an installed file of the workspace's ``config/`` directory."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("smolvla_policy"), "config", name)


def dds_profile() -> list[Any]:
    """The ``dds_profile`` argument and both Fast DDS profile variables set from it, for every node."""
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration

    profile = LaunchConfiguration("dds_profile")
    return [
        DeclareLaunchArgument(
            "dds_profile",
            default_value=config_file("fastdds_shm_only.xml"),
            description="Fast DDS profile for every node (default: shared memory only, no network)",
        ),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
    ]


def policy_arguments(backend: str = "smolvla", task: str = "pick up the cube") -> list[Any]:
    """Launch arguments of the policy server and the action queue."""
    from launch.actions import DeclareLaunchArgument

    return [
        DeclareLaunchArgument(
            "backend",
            default_value=backend,
            description="smolvla | replay | scripted | package.module:factory",
        ),
        DeclareLaunchArgument(
            "backend_options", default_value="{}", description="JSON options of the backend"
        ),
        DeclareLaunchArgument(
            "checkpoint",
            default_value="lerobot/smolvla_base",
            description="SmolVLA checkpoint directory or hub id",
        ),
        DeclareLaunchArgument("device", default_value="auto", description="cpu | cuda | mps | auto"),
        DeclareLaunchArgument(
            "dtype", default_value="float32", description="float32 | bfloat16 | int8_dynamic (CPU)"
        ),
        DeclareLaunchArgument(
            "task", default_value=task, description="instruction sent with every observation"
        ),
        DeclareLaunchArgument("robot", default_value="so101", description="so101 | so100"),
        DeclareLaunchArgument("fps", default_value="30.0", description="control rate of the action queue"),
        DeclareLaunchArgument(
            "chunk_threshold", default_value="0.7", description="queue threshold g in [0, 1]"
        ),
        DeclareLaunchArgument(
            "aggregate_fn",
            default_value="weighted_average",
            description="latest_only | weighted_average | average | conservative | blend",
        ),
    ]


def policy_server_node(extra: dict[str, Any] | None = None, condition: Any = None) -> Any:
    """``policy_server`` with config/policy_server.yaml and the policy arguments."""
    from launch.substitutions import LaunchConfiguration as Arg
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    params = {
        "backend": Arg("backend"),
        "backend_options": ParameterValue(Arg("backend_options"), value_type=str),
        "checkpoint": Arg("checkpoint"),
        "device": Arg("device"),
        "dtype": Arg("dtype"),
        "default_task": Arg("task"),
        "fps": Arg("fps"),
        "robot": Arg("robot"),
        **(extra or {}),
    }
    kwargs = {"condition": condition} if condition is not None else {}
    return Node(
        package="smolvla_policy",
        executable="policy_server",
        name="policy_server",
        parameters=[config_file("policy_server.yaml"), params],
        **kwargs,
    )


def action_queue_node(extra: dict[str, Any] | None = None) -> Any:
    """``action_queue`` with config/action_queue.yaml and the policy arguments."""
    from launch.substitutions import LaunchConfiguration as Arg
    from launch_ros.actions import Node

    params = {
        "robot": Arg("robot"),
        "task": Arg("task"),
        "fps": Arg("fps"),
        "chunk_threshold": Arg("chunk_threshold"),
        "aggregate_fn": Arg("aggregate_fn"),
        **(extra or {}),
    }
    return Node(
        package="smolvla_policy",
        executable="action_queue",
        name="action_queue",
        parameters=[config_file("action_queue.yaml"), params],
    )


def rviz() -> list[Any]:
    """The ``rviz`` argument and an rviz2 node (off by default) showing the predicted gripper path of each
    chunk and the cameras (config/smolvla.rviz)."""
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    return [
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start rviz2 with config/smolvla.rviz"
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", config_file("smolvla.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ]
