"""robot_state_publisher for an SO-10x arm (system-ROS users: TF frames for rviz and other ROS tools).

    ros2 launch so_arm_description description.launch.py robot:=so101
    ros2 launch so_arm_description description.launch.py robot:=so101 \\
        calibration_file:=~/.cache/huggingface/lerobot/calibration/robots/so_follower/my_follower.json

The URDF is ``so_arm_description.robot_model.build_urdf`` with the calibrated joint limits when a lerobot
calibration file is given, and the cameras' frames (``<name>_camera_link``, ``<name>_camera_optical_frame``,
the frame_id of the images): ``top_camera_pose:="x y z roll pitch yaw"`` places the overhead camera in
``base_link`` where it is mounted (default: the simulator's, 0.62 m above x = 0.21 m, looking down),
``wrist_camera_pose`` the wrist camera in ``gripper_link``. The driver and the simulator publish the same
URDF on ``/robot_description`` themselves, so by default robot_state_publisher's own copy goes to
``robot_state_publisher/robot_description`` (one publisher per topic); ``standalone:=true`` (no driver, no
simulator) publishes it on ``/robot_description`` and starts joint_state_publisher_gui (``gui:=true``, needs
a display).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from so_arm_description.cameras import mounts_with
from so_arm_description.robot_model import description_from_files


def _nodes(context, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - launch's OpaqueFunction signature
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    cameras = mounts_with(value("robot"), value("top_camera_pose"), value("wrist_camera_pose"))
    urdf = description_from_files(value("robot"), value("calibration_file") or None, cameras)
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
                "top_camera_pose",
                default_value="",
                description="overhead camera in base_link: 'x y z roll pitch yaw' ('' = the simulator's)",
            ),
            DeclareLaunchArgument(
                "wrist_camera_pose",
                default_value="",
                description="wrist camera in gripper_link: 'x y z roll pitch yaw' ('' = the simulator's)",
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
