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
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from smolvla_policy.launch_common import (
    action_queue_node,
    config_file,
    dds_profile,
    policy_arguments,
    policy_server_node,
    rviz,
)


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
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
    sim = Node(
        package="smolvla_sim",
        executable="sim_node",
        name="sim_node",
        parameters=[
            config_file("sim_node.yaml"),
            {
                "robot": arg("robot"),
                "seed": arg("seed"),
                "real_time_factor": arg("real_time_factor"),
                "publish_clock": arg("use_sim_time"),
                "image_width": arg("image_size"),
                "image_height": arg("image_size"),
            },
        ],
    )
    sim_time = {"use_sim_time": arg("use_sim_time")}
    return LaunchDescription(
        [*args, *dds_profile(), sim, policy_server_node(sim_time), action_queue_node(sim_time), *rviz()]
    )
