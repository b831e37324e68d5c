"""Record demonstrations in simulation: MuJoCo arm + cameras, the scripted expert driving it through the
policy server and action queue (the same /joint_commands stream a policy produces), and the episode recorder.

    ros2 launch smolvla_policy record_sim.launch.py out_dir:=~/demos_sim
    python tools/mini_launch.py launch/record_sim.launch.py out_dir:=/tmp/demos   # without ros2 launch

Episodes are started with the recorder's action and ended with its service (or a time limit):

    ros2 action send_goal /episode_recorder/record smolvla_msgs/action/RecordEpisode \\
        "{task: 'Pick up the red cube and place it in the blue box.', time_limit: 20.0}" --feedback
    ros2 service call /episode_recorder/end_episode std_srvs/srv/SetBool "{data: true}"   # saved, success
    ros2 service call /episode_recorder/discard_last std_srvs/srv/Trigger                 # re-record
    ros2 service call /sim_node/reset std_srvs/srv/Trigger                                # next episode

For N episodes in one command (reset, expert, recorder, outcome from the simulator's success check), use
``smolvla_train record-sim --episodes N --out DIR`` instead. The graph runs on the simulator's /clock.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from smolvla_policy.launch_common import (
    action_queue_node,
    config_file,
    dds_profile,
    integer,
    launch_description,
    node,
    number,
    policy_arguments,
    policy_server_node,
    string,
)


def generate_launch_description() -> LaunchDescription:
    args = [
        *policy_arguments(
            backend="smolvla_sim.expert_backend:make_backend",
            task="Pick up the red cube and place it in the blue box.",
        ),
        DeclareLaunchArgument("seed", default_value="0", description="seed of the first episode"),
        DeclareLaunchArgument(
            "real_time_factor", default_value="1.0", description="simulated seconds per wall second"
        ),
        DeclareLaunchArgument("image_width", default_value="640", description="camera image width [px]"),
        DeclareLaunchArgument("image_height", default_value="480", description="camera image height [px]"),
        DeclareLaunchArgument("camera_rate", default_value="30.0", description="images per camera [Hz]"),
        DeclareLaunchArgument(
            "out_dir", default_value="~/smolvla_demonstrations", description="directory of the episode bags"
        ),
        DeclareLaunchArgument("storage", default_value="mcap", description="mcap | sqlite3"),
        DeclareLaunchArgument("compression", default_value="none", description="none | zstd"),
    ]
    sim = node(
        "smolvla_sim",
        "sim_node",
        "sim_node",
        [
            config_file("sim_node.yaml"),
            {
                "robot": string("robot"),
                "seed": integer("seed"),
                "real_time_factor": number("real_time_factor"),
                "publish_clock": True,
                "image_width": integer("image_width"),
                "image_height": integer("image_height"),
                "camera_rate": number("camera_rate"),
            },
        ],
    )
    sim_time = {"use_sim_time": True}
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
                "use_sim_time": True,
            },
        ],
    )
    return launch_description(
        [*args, *dds_profile(), sim, policy_server_node(sim_time), action_queue_node(sim_time), recorder]
    )
