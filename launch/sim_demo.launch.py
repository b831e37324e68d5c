"""The closed loop in simulation: MuJoCo arm + cameras -> policy server -> action queue -> arm.

    ros2 launch smolvla_policy sim_demo.launch.py              # scripted expert behind the policy server
    ros2 launch smolvla_policy sim_demo.launch.py backend:=smolvla checkpoint:=/path/to/finetuned_smolvla
    python tools/mini_launch.py launch/sim_demo.launch.py [name:=value ...]   # without ros2 launch

Default backend: the simulator's scripted pick-and-place expert, served through the same PredictChunk action
as SmolVLA and driven by the same asynchronous action queue, so the whole graph runs without a trained model.
With ``backend:=smolvla`` the server loads a lerobot SmolVLA checkpoint (local directory or hub id).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument

from smolvla_policy.launch_common import (
    action_queue_node,
    boolean,
    config_file,
    dds_profile,
    integer,
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
        *policy_arguments(
            backend="smolvla_sim.expert_backend:make_backend",
            task="pick up the red cube and put it in the blue box",
        ),
        DeclareLaunchArgument("seed", default_value="0", description="seed of the first episode"),
        DeclareLaunchArgument(
            "real_time_factor",
            default_value="1.0",
            description="simulated seconds per wall second (0.2 = five times slower)",
        ),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="false",
            description="run every node on the simulator's /clock (set with real_time_factor)",
        ),
        DeclareLaunchArgument(
            "image_size", default_value="256", description="camera width and height in pixels"
        ),
    ]
    # every parameter typed explicitly (launch would read a bare argument as YAML: issue 18)
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
                "publish_clock": boolean("use_sim_time"),
                "image_width": integer("image_size"),
                "image_height": integer("image_size"),
            },
        ],
    )
    sim_time = {"use_sim_time": boolean("use_sim_time")}
    viewer_argument, viewer_node = viewer(sim_time)
    # rviz2 first among the nodes: launch_description() checks every node before the first one starts
    return launch_description(
        [
            *args,
            *dds_profile(),
            viewer_argument,
            *rviz(),
            viewer_node,
            sim,
            policy_server_node(sim_time),
            action_queue_node(sim_time),
        ]
    )
