"""A real SO-100/SO-101 arm: Feetech driver + cameras -> policy server -> action queue -> arm.

    ros2 launch smolvla_policy real_arm.launch.py port:=/dev/ttyACM0 robot_id:=my_follower \\
        checkpoint:=/path/to/finetuned_smolvla top_camera:=/dev/video0 wrist_camera:=/dev/video2
    ros2 launch smolvla_policy real_arm.launch.py port:=emulated top_camera:=demo.mp4 wrist_camera:=demo.mp4

``port:=emulated`` runs the servo-bus emulator instead of an arm (try the stack without hardware). To run
the policy on a GPU machine instead, start ``policy_server.launch.py`` there and pass ``policy_server:=false``
here (both machines then need a DDS profile that reaches the other one, not the shared-memory-only default).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _config(name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("smolvla_policy"), "config", name)


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument(
            "port", default_value="/dev/ttyACM0", description="serial port of the Feetech bus, or 'emulated'"
        ),
        DeclareLaunchArgument("robot", default_value="so101", description="so101 | so100"),
        DeclareLaunchArgument(
            "robot_id",
            default_value="my_follower",
            description="lerobot calibration id (…/calibration/robots/so_follower/<id>.json)",
        ),
        DeclareLaunchArgument(
            "top_camera", default_value="0", description="device index, /dev/videoN or file"
        ),
        DeclareLaunchArgument(
            "wrist_camera", default_value="1", description="device index, /dev/videoN or file"
        ),
        DeclareLaunchArgument("camera_fps", default_value="30.0", description="camera frame rate"),
        DeclareLaunchArgument(
            "policy_server",
            default_value="true",
            description="start the policy server here (false: it runs elsewhere)",
        ),
        DeclareLaunchArgument("backend", default_value="smolvla", description="policy backend"),
        DeclareLaunchArgument(
            "checkpoint",
            default_value="lerobot/smolvla_base",
            description="SmolVLA checkpoint directory or hub id",
        ),
        DeclareLaunchArgument("device", default_value="auto", description="cpu | cuda | mps | auto"),
        DeclareLaunchArgument("dtype", default_value="float32", description="float32 | bfloat16"),
        DeclareLaunchArgument("task", default_value="pick up the cube", description="instruction"),
        DeclareLaunchArgument(
            "chunk_threshold", default_value="0.7", description="queue threshold g in [0, 1]"
        ),
        DeclareLaunchArgument("aggregate_fn", default_value="weighted_average", description="chunk fusion"),
        DeclareLaunchArgument("fps", default_value="30.0", description="control rate of the action queue"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=_config("fastdds_shm_only.xml"),
            description="Fast DDS profile for every node (default: shared memory only)",
        ),
    ]
    env = [
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", arg("dds_profile")),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", arg("dds_profile")),
    ]
    driver = Node(
        package="so_arm_driver",
        executable="so_arm_driver",
        name="so_arm_driver",
        parameters=[
            _config("so_arm_driver.yaml"),
            {"port": arg("port"), "robot": arg("robot"), "robot_id": arg("robot_id")},
        ],
    )
    cameras = [
        Node(
            package="so_arm_driver",
            executable="camera_node",
            name=f"camera_{name}",
            parameters=[
                _config("camera_node.yaml"),
                {"name": name, "source": arg(f"{name}_camera"), "fps": arg("camera_fps")},
            ],
        )
        for name in ("top", "wrist")
    ]
    server = Node(
        package="smolvla_policy",
        executable="policy_server",
        name="policy_server",
        condition=IfCondition(arg("policy_server")),
        parameters=[
            _config("policy_server.yaml"),
            {
                "backend": arg("backend"),
                "checkpoint": arg("checkpoint"),
                "device": arg("device"),
                "dtype": arg("dtype"),
                "default_task": arg("task"),
                "fps": arg("fps"),
                "robot": arg("robot"),
            },
        ],
    )
    queue = Node(
        package="smolvla_policy",
        executable="action_queue",
        name="action_queue",
        parameters=[
            _config("action_queue.yaml"),
            {
                "task": arg("task"),
                "fps": arg("fps"),
                "chunk_threshold": arg("chunk_threshold"),
                "aggregate_fn": arg("aggregate_fn"),
            },
        ],
    )
    return LaunchDescription([*args, *env, driver, *cameras, server, queue])
