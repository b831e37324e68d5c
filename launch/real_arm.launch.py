"""A real SO-100/SO-101 arm: Feetech driver + cameras -> policy server -> action queue -> arm.

    ros2 launch smolvla_policy real_arm.launch.py port:=/dev/ttyACM0 robot_id:=my_follower \\
        checkpoint:=/path/to/finetuned_smolvla top_camera:=/dev/video0 wrist_camera:=/dev/video2
    ros2 launch smolvla_policy real_arm.launch.py port:=emulated top_camera:=demo.mp4 wrist_camera:=demo.mp4

``port:=emulated`` runs the servo-bus emulator instead of an arm (try the stack without hardware). To run
the policy on a GPU machine instead, start ``policy_server.launch.py`` there and pass ``policy_server:=false``
here (both machines then need a DDS profile that reaches the other one, not the shared-memory-only default).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration

from smolvla_policy.launch_common import (
    action_queue_node,
    camera_poses,
    config_file,
    dds_profile,
    launch_description,
    node,
    number,
    policy_arguments,
    policy_server_node,
    rviz,
    string,
    viewer,
)


def generate_launch_description() -> LaunchDescription:
    args = [
        *policy_arguments(),
        DeclareLaunchArgument(
            "port", default_value="/dev/ttyACM0", description="serial port of the Feetech bus, or 'emulated'"
        ),
        DeclareLaunchArgument(
            "robot_id",
            default_value="my_follower",
            description="lerobot calibration id (.../calibration/robots/so_follower/<id>.json)",
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
    ]
    # every parameter typed explicitly (launch would read robot_id:=007 as an int: issue 18)
    driver = node(
        "so_arm_driver",
        "so_arm_driver",
        "so_arm_driver",
        [
            config_file("so_arm_driver.yaml"),
            {
                "port": string("port"),
                "robot": string("robot"),
                "robot_id": string("robot_id"),
                **camera_poses(),
            },
        ],
    )
    cameras = [
        node(
            "so_arm_driver",
            "camera_node",
            f"camera_{name}",
            [
                config_file("camera_node.yaml"),
                {"name": name, "source": string(f"{name}_camera"), "fps": number("camera_fps")},
            ],
        )
        for name in ("top", "wrist")
    ]
    server = policy_server_node(condition=IfCondition(LaunchConfiguration("policy_server")))
    # launch_description() checks every node before the first one starts (issue 18)
    viewer_argument, viewer_node = viewer()
    return launch_description(
        [
            *args,
            *dds_profile(),
            viewer_argument,
            *rviz(),
            viewer_node,
            driver,
            *cameras,
            server,
            action_queue_node(),
        ]
    )
