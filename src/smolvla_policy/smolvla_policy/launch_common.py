"""Pieces shared by the launch files in ``launch/``: the DDS profile, the policy arguments, typed parameter
values, the ``policy_server`` and ``action_queue`` nodes, and the start-up check. Imported by launch files
only (it needs the launch API; ``tools/mini_launch.py`` provides stand-ins with the same semantics).

Rules (issue 18; the files were run with the real ``launch``/``launch_ros``):

- every parameter set from a launch argument is typed explicitly (:func:`string`, :func:`number`,
  :func:`integer`, :func:`boolean`): launch reads a bare substitution as YAML, so ``task:="pick: the red
  cube"`` would be a dict (launch refuses it), ``task:=yes`` a bool, ``robot_id:=007`` an int and ``fps:=30``
  an int for a double parameter;
- :func:`launch_description` puts a check before the first node: every node that would start has its package
  and executable installed, its conditions are valid (``rviz:=yes`` is not) and its parameter values convert.
  A launch that cannot start one of its nodes starts none of them. Every node except rviz2 is started with
  ``on_exit=Shutdown()``: when one exits, launch stops the others;
- the DDS profile is a regular file (a symlink named by both profile variables makes Fast DDS load it twice:
  ``XMLPARSER Error ... same id``) and is set through the variable the installed Fast DDS reads: Fast DDS 3
  (rmw_fastrtps >= 9, Kilted and later) reads ``FASTDDS_DEFAULT_PROFILES_FILE`` and warns that
  ``FASTRTPS_DEFAULT_PROFILES_FILE`` is deprecated, so the latter is removed there; Fast DDS 2 (Jazzy) reads
  only ``FASTRTPS_DEFAULT_PROFILES_FILE``, so both are set; when the version cannot be read, both are set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILE_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"


def config_file(name: str) -> str:
    """Path of an installed file of the workspace's ``config/`` directory."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("smolvla_policy"), "config", name)


# -- typed parameter values ----------------------------------------------------------------------------------
def _typed(argument: str, value_type: type) -> Any:
    from launch.substitutions import LaunchConfiguration
    from launch_ros.parameter_descriptions import ParameterValue

    return ParameterValue(LaunchConfiguration(argument), value_type=value_type)


def string(argument: str) -> Any:
    """The launch argument as a string parameter, as given (``pick: the red cube``, ``yes``, ``007``)."""
    return _typed(argument, str)


def number(argument: str) -> Any:
    """The launch argument as a double parameter (``30`` -> 30.0)."""
    return _typed(argument, float)


def integer(argument: str) -> Any:
    """The launch argument as an integer parameter (``007`` -> 7; ``1.5`` is refused before any start)."""
    return _typed(argument, int)


def boolean(argument: str) -> Any:
    """The launch argument as a bool parameter (``true``/``false``/``1``/``0``, YAML booleans)."""
    return _typed(argument, bool)


# -- DDS profile ---------------------------------------------------------------------------------------------
def fast_dds_major_version() -> int | None:
    """3 for Fast DDS 3 (rmw_fastrtps >= 9: Kilted, Rolling), 2 for Fast DDS 2 (Jazzy, Humble), else None."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory("rmw_fastrtps_shared_cpp"))
        match = re.search(r"<version>\s*(\d+)\.", (share / "package.xml").read_text())
    except (PackageNotFoundError, OSError):
        return None
    if match is None:
        return None
    return 3 if int(match.group(1)) >= 9 else 2


def profile_environment(profile: str, fast_dds_major: int | None) -> tuple[dict[str, str], list[str]]:
    """(variables to set, variables to remove) so that the installed Fast DDS reads ``profile`` (made a
    regular file path) and nothing else: see the module docstring."""
    path = os.path.realpath(profile)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dds_profile '{profile}' is not a file")
    if fast_dds_major == 3:
        return {PROFILE_VARIABLE: path}, [LEGACY_PROFILE_VARIABLE]
    return {PROFILE_VARIABLE: path, LEGACY_PROFILE_VARIABLE: path}, []


def _set_dds_profile(context: Any) -> list[Any]:
    from launch.actions import SetEnvironmentVariable, UnsetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration

    variables, removed = profile_environment(
        LaunchConfiguration("dds_profile").perform(context), fast_dds_major_version()
    )
    # rmw_fastrtps leaves discovery to the profile only with SYSTEM_DEFAULT; otherwise a UDP profile
    # (config/fastdds_udp_peers.xml, issue 17) still multicasts SPDP. Harmless with the SHM-only profile.
    return (
        [SetEnvironmentVariable(k, v) for k, v in variables.items()]
        + [UnsetEnvironmentVariable(k) for k in removed]
        + [SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "SYSTEM_DEFAULT")]
    )


def dds_profile() -> list[Any]:
    """The ``dds_profile`` argument and the Fast DDS profile variable(s) set from it, for every node."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return [
        DeclareLaunchArgument(
            "dds_profile",
            default_value=config_file("fastdds_shm_only.xml"),
            description="Fast DDS profile for every node (default: shared memory only, no network)",
        ),
        OpaqueFunction(function=_set_dds_profile),
    ]


# -- nodes and the start-up check ----------------------------------------------------------------------------
def node(
    package: str,
    executable: str,
    name: str,
    parameters: list[Any],
    *,
    condition: Any = None,
    arguments: Sequence[Any] | None = None,
    required: bool = True,
) -> Any:
    """A launch_ros Node (output on the screen); ``required``: its exit shuts the whole launch down."""
    from launch.actions import Shutdown
    from launch_ros.actions import Node

    kwargs: dict[str, Any] = {}
    if condition is not None:
        kwargs["condition"] = condition
    if arguments:
        kwargs["arguments"] = list(arguments)
    if required:
        kwargs["on_exit"] = Shutdown(reason=f"{name} exited")
    result = Node(
        package=package, executable=executable, name=name, parameters=parameters, output="screen", **kwargs
    )
    result.smolvla_label = name  # what check_nodes reports and evaluates
    result.smolvla_parameters = parameters
    return result


def _text(context: Any, value: Any) -> str:
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    return (
        value
        if isinstance(value, str)
        else perform_substitutions(context, normalize_to_list_of_substitutions(value))
    )


def node_problems(context: Any, launch_node: Any) -> list[str]:
    """Why ``launch_node`` could not start (empty: it can): package, executable, parameter values."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    from launch_ros.utilities import evaluate_parameters, normalize_parameters

    label = getattr(launch_node, "smolvla_label", None) or str(launch_node.node_executable)
    package = _text(context, launch_node.node_package)
    executable = _text(context, launch_node.node_executable)
    try:
        prefix = get_package_prefix(package)
    except PackageNotFoundError:
        return [f"{label}: package '{package}' not found"]
    path = Path(prefix) / "lib" / package / executable
    if not (path.is_file() and os.access(path, os.X_OK)):
        return [f"{label}: executable '{executable}' not found in package '{package}' ({path})"]
    problems = []
    parameters = getattr(launch_node, "smolvla_parameters", None)
    if parameters:
        try:
            for item in evaluate_parameters(context, normalize_parameters(parameters)):
                if isinstance(item, (str, os.PathLike)) and not Path(item).is_file():
                    problems.append(f"{label}: parameter file {item} not found")
        except (TypeError, ValueError) as exc:
            problems.append(f"{label}: {exc}")
    return problems


def check_nodes(context: Any, nodes: Sequence[Any]) -> list[Any]:
    """OpaqueFunction body: raise (so launch stops before it started anything) if a node that would start
    cannot; conditions are evaluated here too, so an invalid one (``rviz:=yes``) fails before any start."""
    problems: list[str] = []
    for launch_node in nodes:
        try:
            if launch_node.condition is not None and not launch_node.condition.evaluate(context):
                continue
            problems += node_problems(context, launch_node)
        except Exception as exc:  # noqa: BLE001 (every problem is reported, then the launch is refused)
            label = getattr(launch_node, "smolvla_label", None) or str(launch_node.node_executable)
            problems.append(f"{label}: {exc}")
    if problems:
        raise RuntimeError("the launch cannot start, no node was started: " + "; ".join(problems))
    return []


def launch_description(entities: Sequence[Any]) -> Any:
    """A LaunchDescription of ``entities`` in order, with :func:`check_nodes` right before the first node."""
    from launch import LaunchDescription
    from launch.actions import OpaqueFunction
    from launch_ros.actions import Node

    nodes = [e for e in entities if isinstance(e, Node)]
    first = next((i for i, e in enumerate(entities) if isinstance(e, Node)), len(entities))
    check = OpaqueFunction(function=check_nodes, args=[nodes])
    return LaunchDescription([*entities[:first], check, *entities[first:]])


# -- the policy arguments and nodes --------------------------------------------------------------------------
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
        DeclareLaunchArgument(
            "observation_image_size",
            default_value="",
            description="compact observations (docs/remote_policy.md): '' raw | auto | WIDTHxHEIGHT",
        ),
        DeclareLaunchArgument(
            "observation_jpeg_quality",
            default_value="0",
            description="0 = rgb8 images; 1..100 = JPEG-encoded observations at this quality",
        ),
    ]


def policy_server_node(extra: dict[str, Any] | None = None, condition: Any = None) -> Any:
    """``policy_server`` with config/policy_server.yaml and the policy arguments."""
    params = {
        "backend": string("backend"),
        "backend_options": string("backend_options"),
        "checkpoint": string("checkpoint"),
        "device": string("device"),
        "dtype": string("dtype"),
        "default_task": string("task"),
        "fps": number("fps"),
        "robot": string("robot"),
        **(extra or {}),
    }
    return node(
        "smolvla_policy",
        "policy_server",
        "policy_server",
        [config_file("policy_server.yaml"), params],
        condition=condition,
    )


def action_queue_node(extra: dict[str, Any] | None = None) -> Any:
    """``action_queue`` with config/action_queue.yaml and the policy arguments."""
    params = {
        "robot": string("robot"),
        "task": string("task"),
        "fps": number("fps"),
        "chunk_threshold": number("chunk_threshold"),
        "aggregate_fn": string("aggregate_fn"),
        "observation_image_size": string("observation_image_size"),
        "observation_jpeg_quality": integer("observation_jpeg_quality"),
        **(extra or {}),
    }
    return node("smolvla_policy", "action_queue", "action_queue", [config_file("action_queue.yaml"), params])


def viewer(extra: dict[str, Any] | None = None) -> list[Any]:
    """``[argument, node]``: the ``viewer`` argument and the Rerun ``viewer`` node (off by default;
    smolvla_train): the loop in a web browser at http://127.0.0.1:9090 (config/viewer.yaml). Not required:
    its exit leaves the rest running. Put the argument before the first node (check_nodes evaluates every
    node's condition there)."""
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration

    return [
        DeclareLaunchArgument(
            "viewer",
            default_value="false",
            description="start the Rerun web viewer on 127.0.0.1:9090 (true | false)",
        ),
        node(
            "smolvla_train",
            "viewer",
            "viewer",
            [config_file("viewer.yaml"), {"robot": string("robot"), **(extra or {})}],
            condition=IfCondition(LaunchConfiguration("viewer")),
            required=False,
        ),
    ]


def _robot_state_publisher(context: Any) -> list[Any]:
    """OpaqueFunction body: with ``rviz:=true``, robot_state_publisher for the TF frames of the robot model
    (the URDF of the ``robot`` argument with the cameras' frames, the overhead camera at ``top_camera_pose``;
    the driver's or simulator's calibrated copy stays the one on /robot_description: this one is remapped
    to robot_state_publisher/robot_description)."""
    from launch.substitutions import LaunchConfiguration

    if LaunchConfiguration("rviz").perform(context).strip().lower() not in ("true", "1"):
        return []
    from so_arm_description.cameras import mounts_with
    from so_arm_description.robot_model import build_urdf

    robot = LaunchConfiguration("robot").perform(context)
    cameras = mounts_with(
        robot,
        LaunchConfiguration("top_camera_pose").perform(context),
        LaunchConfiguration("wrist_camera_pose").perform(context),
    )
    return [
        node(
            "robot_state_publisher",
            "robot_state_publisher",
            "robot_state_publisher",
            [{"robot_description": build_urdf(robot, None, cameras)}],
            arguments=["--ros-args", "-r", "robot_description:=robot_state_publisher/robot_description"],
            required=False,
        )
    ]


def camera_pose_arguments() -> list[Any]:
    """The ``top_camera_pose`` / ``wrist_camera_pose`` arguments: where a real setup's cameras are (rviz's
    robot_state_publisher, and the driver's /robot_description with the ``camera_pose(...)`` parameters)."""
    from launch.actions import DeclareLaunchArgument

    return [
        DeclareLaunchArgument(
            "top_camera_pose",
            default_value="",
            description="overhead camera in base_link 'x y z roll pitch yaw' (m, rad; '' = the sim's)",
        ),
        DeclareLaunchArgument(
            "wrist_camera_pose",
            default_value="",
            description="wrist camera in gripper_link 'x y z roll pitch yaw' (m, rad; '' = the sim's)",
        ),
    ]


def camera_poses() -> dict[str, Any]:
    """The driver parameters of :func:`camera_pose_arguments` (typed: a pose is a string)."""
    return {name: string(name) for name in ("top_camera_pose", "wrist_camera_pose")}


def rviz() -> list[Any]:
    """The ``rviz`` argument and an rviz2 node (off by default) showing the robot model (TF from
    robot_state_publisher, started with it, camera frames included: ``top_camera_pose`` /
    ``wrist_camera_pose`` place the cameras of a real setup), the predicted gripper path of each chunk and the
    cameras (config/smolvla.rviz). Not required: closing rviz2 leaves the rest running."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration

    return [
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start rviz2 with config/smolvla.rviz (true | false)"
        ),
        *camera_pose_arguments(),
        node(
            "rviz2",
            "rviz2",
            "rviz2",
            [],
            arguments=["-d", config_file("smolvla.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
            required=False,
        ),
        OpaqueFunction(function=_robot_state_publisher),
    ]
