"""Record demonstrations on a real SO-101: the follower arm, the leader arm (moved by hand), teleoperation
leader -> follower, two cameras, and the episode recorder.

    ros2 launch smolvla_policy record_real.launch.py port:=/dev/ttyACM0 robot_id:=my_follower \\
        leader_port:=/dev/ttyACM1 leader_id:=my_leader top_camera:=/dev/video0 wrist_camera:=/dev/video2 \\
        out_dir:=~/demos
    ros2 launch smolvla_policy record_real.launch.py port:=emulated leader_port:=emulated \\
        top_camera:=clip.mp4 wrist_camera:=clip.mp4                # try it without hardware

Calibrate both arms first (``so_arm_calibrate --port ... --robot-id my_follower`` and ``so_arm_calibrate
--leader --port ... --robot-id my_leader``; lerobot's calibration files are read as they are). Teleoperation
starts at once (``teleop_autostart``); the follower moves from where it is toward the leader's pose at most
``max_step`` per command. Episodes: the recorder's ``~/record`` action, ``~/end_episode``, ``~/discard_last``
(see ``record_sim.launch.py`` and the README, "Record demonstrations").
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from smolvla_policy.launch_common import (
    boolean,
    camera_pose_arguments,
    camera_poses,
    config_file,
    dds_profile,
    launch_description,
    node,
    number,
    string,
)


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("robot", default_value="so101", description="so101 | so100"),
        DeclareLaunchArgument(
            "port", default_value="/dev/ttyACM0", description="follower's Feetech bus, or 'emulated'"
        ),
        DeclareLaunchArgument(
            "robot_id",
            default_value="my_follower",
            description="follower calibration id (robots/so_follower)",
        ),
        DeclareLaunchArgument(
            "leader_port", default_value="/dev/ttyACM1", description="leader's Feetech bus, or 'emulated'"
        ),
        DeclareLaunchArgument(
            "leader_id",
            default_value="my_leader",
            description="leader calibration id (teleoperators/so_leader)",
        ),
        DeclareLaunchArgument(
            "top_camera", default_value="0", description="device index, /dev/videoN or file"
        ),
        DeclareLaunchArgument(
            "wrist_camera", default_value="1", description="device index, /dev/videoN or file"
        ),
        DeclareLaunchArgument("camera_fps", default_value="30.0", description="camera frame rate"),
        DeclareLaunchArgument("teleop_rate", default_value="30.0", description="command (action) rate [Hz]"),
        DeclareLaunchArgument(
            "teleop_autostart", default_value="true", description="follow the leader as soon as possible"
        ),
        DeclareLaunchArgument(
            "out_dir", default_value="~/smolvla_demonstrations", description="directory of the episode bags"
        ),
        DeclareLaunchArgument("storage", default_value="mcap", description="mcap | sqlite3"),
        DeclareLaunchArgument("compression", default_value="none", description="none | zstd"),
        *camera_pose_arguments(),
    ]
    follower = node(
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
    leader = node(
        "so_arm_driver",
        "so_arm_driver",
        "so_arm_leader",
        [
            config_file("so_arm_driver.yaml"),
            {
                "port": string("leader_port"),
                "robot": string("robot"),
                "robot_id": string("leader_id"),
                "leader": True,
            },
        ],
    )
    teleop = node(
        "so_arm_driver",
        "teleop",
        "teleop",
        [
            config_file("teleop.yaml"),
            {"rate": number("teleop_rate"), "autostart": boolean("teleop_autostart")},
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
    recorder = node(
        "smolvla_train",
        "episode_recorder",
        "episode_recorder",
        [
            config_file("episode_recorder.yaml"),
            {
                "out_dir": string("out_dir"),
                "storage": string("storage"),
                "compression": string("compression"),
                "robot": string("robot"),
            },
        ],
    )
    return launch_description([*args, *dds_profile(), follower, leader, teleop, *cameras, recorder])
