"""The closed loop in simulation: MuJoCo arm + cameras -> policy server -> action queue -> arm.

    ros2 launch smolvla_policy sim_demo.launch.py              # scripted expert behind the policy server
    ros2 launch smolvla_policy sim_demo.launch.py backend:=smolvla checkpoint:=/path/to/finetuned_smolvla
    python tools/mini_launch.py launch/sim_demo.launch.py [name:=value ...]   # without ros2 launch

Default backend: the simulator's scripted pick-and-place expert, served through the same PredictChunk action
as SmolVLA and driven by the same asynchronous action queue, so the whole graph runs without a trained model.
With ``backend:=smolvla`` the server loads a lerobot SmolVLA checkpoint (local directory or hub id).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def _config(name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("smolvla_policy"), "config", name)


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument(
            "backend",
            default_value="smolvla_sim.expert_backend:make_backend",
            description="policy backend: smolvla | replay | scripted | package.module:factory",
        ),
        DeclareLaunchArgument(
            "backend_options", default_value="{}", description="JSON options of the backend"
        ),
        DeclareLaunchArgument(
            "checkpoint",
            default_value="lerobot/smolvla_base",
            description="SmolVLA checkpoint directory or hub id (backend:=smolvla)",
        ),
        DeclareLaunchArgument("device", default_value="auto", description="cpu | cuda | mps | auto"),
        DeclareLaunchArgument("dtype", default_value="float32", description="float32 | bfloat16"),
        DeclareLaunchArgument(
            "task",
            default_value="pick up the red cube and put it in the blue box",
            description="instruction sent with every observation",
        ),
        DeclareLaunchArgument("robot", default_value="so101", description="so101 | so100"),
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
        DeclareLaunchArgument(
            "chunk_threshold", default_value="0.7", description="queue threshold g in [0, 1]"
        ),
        DeclareLaunchArgument(
            "aggregate_fn",
            default_value="weighted_average",
            description="latest_only | weighted_average | average | conservative | blend",
        ),
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
    sim = Node(
        package="smolvla_sim",
        executable="sim_node",
        name="sim_node",
        parameters=[
            _config("sim_node.yaml"),
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
    server = Node(
        package="smolvla_policy",
        executable="policy_server",
        name="policy_server",
        parameters=[
            _config("policy_server.yaml"),
            {
                "backend": arg("backend"),
                "backend_options": ParameterValue(arg("backend_options"), value_type=str),
                "checkpoint": arg("checkpoint"),
                "device": arg("device"),
                "dtype": arg("dtype"),
                "default_task": arg("task"),
                "fps": arg("fps"),
                "robot": arg("robot"),
                "use_sim_time": arg("use_sim_time"),
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
                "use_sim_time": arg("use_sim_time"),
            },
        ],
    )
    return LaunchDescription([*args, *env, sim, server, queue])
