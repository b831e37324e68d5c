"""robot_state_publisher for an SO-10x arm (system-ROS users: TF frames for rviz and other ROS tools).

    ros2 launch so_arm_description description.launch.py robot:=so101
    ros2 launch so_arm_description description.launch.py robot:=so101 \\
        calibration_file:=~/.cache/huggingface/lerobot/calibration/robots/so_follower/my_follower.json

The URDF is ``so_arm_description.robot_model.build_urdf`` with the calibrated joint limits when a lerobot
calibration file is given. The driver and the simulator publish the same URDF on ``/robot_description``
themselves, so by default robot_state_publisher's own copy goes to ``robot_state_publisher/robot_description``
(one publisher per topic); ``standalone:=true`` (no driver, no simulator) publishes it on
``/robot_description`` and starts joint_state_publisher_gui (``gui:=true``, needs a display).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from so_arm_description.robot_model import description_from_files


def _nodes(context, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - launch's OpaqueFunction signature
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    urdf = description_from_files(value("robot"), value("calibration_file") or None)
    standalone = value("standalone").lower() in ("1", "true", "yes")
    remaps = [] if standalone else [("robot_description", "robot_state_publisher/robot_description")]
    nodes = [
        Node(
            package="robot_state_publisher",
            executable="robot_state_publisher",
            parameters=[{"robot_description": urdf}],
            remappings=remaps,
        )
    ]
    if standalone:
        nodes.append(
            Node(
                package="joint_state_publisher_gui",
                executable="joint_state_publisher_gui",
                condition=IfCondition(LaunchConfiguration("gui")),
            )
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("robot", default_value="so101", description="so101 | so100"),
            DeclareLaunchArgument(
                "calibration_file",
                default_value="",
                description="lerobot calibration JSON (calibrated limits)",
            ),
            DeclareLaunchArgument(
                "standalone",
                default_value="false",
                description="true: no driver/simulator runs, publish /robot_description from here",
            ),
            DeclareLaunchArgument(
                "gui", default_value="true", description="joint_state_publisher_gui (standalone)"
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
