"""A small ``ros2`` command for pip-only installs (ros2cli is not on PyPI): the README's lines work verbatim.

Covers what the README uses, with ros2cli's syntax and output shape, through rclpy:

    ros2 run <package> <executable> [args ...]
    ros2 launch <package> <file.launch.py> [name:=value ...]    (the launch stand-ins, tools/mini_launch.py)
    ros2 param get|set|list|dump <node> [name [value]]
    ros2 topic list [-t] | echo <topic> [--once] [--times N] [--no-arr] | hz <topic> [--window N]
    ros2 service call <service> <type> [values]       (e.g. std_srvs/srv/Trigger, std_srvs/srv/SetBool)
    ros2 action send_goal <action> <type> <goal> [-f]  (e.g. the episode recorder's RecordEpisode)
    ros2 bag info <bag>

``scripts/setup.sh`` installs it as ``.venv/bin/ros2`` only when no ``ros2`` command of a ROS install is found
(``python -m smolvla_train.ros2cli --install-shim BIN_DIR``); with a ROS install sourced the real ros2cli is
used. ROS communication uses the environment of ``scripts/env.sh`` (shared-memory-only DDS profile, the domain
id); without a profile set, the workspace's installed one is applied.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

PROG = "ros2"
#: How long to look for a node, topic or service before giving up [s].
DISCOVERY_TIMEOUT = 30.0


class CliError(RuntimeError):
    pass


# -- message helpers (no rosidl_runtime_py on PyPI) ----------------------------------------------------------
def import_type(name: str) -> Any:
    """``pkg/msg/Name`` (or ``pkg/srv/Name``, ``pkg/Name`` for messages) -> the Python class."""
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise CliError(f"the passed type '{name}' is invalid (expected e.g. std_msgs/msg/String)")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise CliError(f"the passed type '{name}' could not be imported: {exc}") from exc


def to_plain(msg: Any, no_arr: bool = False) -> Any:
    """A message as nested dicts/lists (field order kept), as ros2 topic echo prints it."""
    if hasattr(msg, "get_fields_and_field_types"):
        out: dict[str, Any] = {}
        for field, ftype in msg.get_fields_and_field_types().items():
            value = getattr(msg, field)
            if no_arr and ("sequence" in ftype or "[" in ftype) and not isinstance(value, str):
                item = ftype.split("<")[-1].rstrip(">").split(",")[0]
                out[field] = f"<sequence type: {item}, length: {len(value)}>"
            else:
                out[field] = to_plain(value, no_arr)
        return out
    if isinstance(value := msg, (bytes, bytearray)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy / array.array
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_plain(v, no_arr) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(dict, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items()))


def to_yaml(msg: Any, no_arr: bool = False) -> str:
    return yaml.dump(to_plain(msg, no_arr), Dumper=_Dumper, default_flow_style=False, sort_keys=False)


def set_fields(msg: Any, values: dict[str, Any]) -> Any:
    """Fill ``msg`` from a dict (``{data: true}``); nested messages recursively."""
    fields = msg.get_fields_and_field_types()
    for key, value in values.items():
        if key not in fields:
            raise CliError(f"{type(msg).__name__} has no field '{key}' (fields: {', '.join(fields)})")
        current = getattr(msg, key)
        if hasattr(current, "get_fields_and_field_types") and isinstance(value, dict):
            set_fields(current, value)
        else:
            try:
                setattr(
                    msg, key, type(current)(value) if isinstance(current, (bool, int, float, str)) else value
                )
            except (TypeError, ValueError, AssertionError) as exc:
                raise CliError(f"field '{key}': {exc}") from exc
    return msg


def _repr_msg(msg: Any) -> str:
    """ros2 service call's repr: ``std_srvs.srv.Trigger_Response(success=True, message='')``."""
    module = type(msg).__module__.rsplit(".", 1)[0].replace("._", ".")
    args = ", ".join(f"{f}={getattr(msg, f)!r}" for f in msg.get_fields_and_field_types())
    return f"{module}.{type(msg).__name__}({args})"


# -- parameters ----------------------------------------------------------------------------------------------
def parameter_value(text: str) -> Any:
    """ros2 param set's value parsing: YAML (``0.5`` a double, ``30`` an integer, ``true``, ``[a, b]``)."""
    from rcl_interfaces.msg import ParameterType, ParameterValue

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    pv = ParameterValue()
    if isinstance(value, bool):
        pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    elif isinstance(value, list) and value and all(isinstance(v, bool) for v in value):
        pv.type, pv.bool_array_value = ParameterType.PARAMETER_BOOL_ARRAY, value
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        pv.type, pv.integer_array_value = ParameterType.PARAMETER_INTEGER_ARRAY, value
    elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        pv.type, pv.double_array_value = ParameterType.PARAMETER_DOUBLE_ARRAY, [float(v) for v in value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        pv.type, pv.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, value
    else:
        pv.type, pv.string_value = (
            ParameterType.PARAMETER_STRING,
            text if not isinstance(value, str) else value,
        )
    return pv


_TYPE_WORDS = {1: "Boolean", 2: "Integer", 3: "Double", 4: "String", 5: "Byte", 6: "Boolean", 7: "Integer",
               8: "Double", 9: "String"}  # fmt: skip


def python_value(pv: Any) -> Any:
    return {
        1: pv.bool_value,
        2: pv.integer_value,
        3: pv.double_value,
        4: pv.string_value,
        5: list(pv.byte_array_value),
        6: list(pv.bool_array_value),
        7: list(pv.integer_array_value),
        8: list(pv.double_array_value),
        9: list(pv.string_array_value),
    }.get(pv.type)


def format_get(pv: Any) -> str:
    """ros2 param get's line: ``Double value is: 0.5`` / ``String values are: ['top', 'wrist']``."""
    if pv.type == 0:
        return "Parameter not set."
    word = _TYPE_WORDS[pv.type]
    value = python_value(pv)
    return f"{word} values are: {value}" if pv.type >= 5 else f"{word} value is: {value}"


# -- the ROS side --------------------------------------------------------------------------------------------
class Ros:
    """One short-lived rclpy node (hidden name ``_ros2cli_<pid>``) on the environment's domain."""

    def __init__(self) -> None:
        from smolvla_train.recording.processes import apply_ros_environment

        apply_ros_environment()
        import rclpy

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node(f"_ros2cli_{os.getpid()}", context=self.context)
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = DISCOVERY_TIMEOUT) -> Any:
        client = self.node.create_client(srv_type, name)
        if not self.spin_until(client.service_is_ready, timeout):
            raise CliError(f"service {name} not available (is the node running on ROS_DOMAIN_ID="
                           f"{os.environ.get('ROS_DOMAIN_ID', '0')}?)")  # fmt: skip
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise CliError(f"service {name}: no response")
        return future.result()

    def topic_types(self) -> dict[str, list[str]]:
        return dict(self.node.get_topic_names_and_types())

    def wait_topic(self, topic: str, timeout: float = DISCOVERY_TIMEOUT) -> str:
        found: dict[str, str] = {}

        def seen() -> bool:
            types = self.topic_types().get(topic)
            if types:
                found["t"] = types[0]
            return bool(types)

        if not self.spin_until(seen, timeout):
            raise CliError(f"topic {topic} has no publisher (could not determine the type)")
        return found["t"]

    def qos_for(self, topic: str) -> Any:
        """Like ros2cli: reliable unless a publisher is best effort; transient local if all publishers are."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        infos = self.node.get_publishers_info_by_topic(topic)
        best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
        latched = bool(infos) and all(
            i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos
        )
        return QoSProfile(
            depth=10,
            reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def _node_name(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def cmd_param(args: argparse.Namespace) -> int:
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters

    ros = Ros()
    try:
        node = _node_name(args.node)
        if args.verb == "get":
            res = ros.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[args.name]))
            if not res.values or res.values[0].type == 0:
                print("Parameter not set.")
                return 1
            print(format_get(res.values[0]))
        elif args.verb == "set":
            req = SetParameters.Request(
                parameters=[Parameter(name=args.name, value=parameter_value(args.value))]
            )
            result = ros.call(SetParameters, f"{node}/set_parameters", req).results[0]
            if result.successful:
                print("Set parameter successful")
            else:
                print("Set parameter failed" + (f": {result.reason}" if result.reason else ""))
                return 1
        elif args.verb in ("list", "dump"):
            names = sorted(
                ros.call(ListParameters, f"{node}/list_parameters", ListParameters.Request()).result.names
            )
            if args.verb == "list":
                for n in names:
                    print(f"  {n}")
            else:
                values = ros.call(
                    GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names)
                ).values
                params: dict[str, Any] = {}
                for n, v in zip(names, values):
                    cursor = params
                    *parents, leaf = n.split(".")
                    for p in parents:
                        cursor = cursor.setdefault(p, {})
                    cursor[leaf] = python_value(v)
                print(
                    yaml.safe_dump(
                        {node: {"ros__parameters": params}}, sort_keys=True, default_flow_style=None
                    )
                )
        return 0
    finally:
        ros.close()


def cmd_topic(args: argparse.Namespace) -> int:
    ros = Ros()
    try:
        if args.verb == "list":
            ros.spin_until(lambda: False, 1.0)  # discovery
            for name, types in sorted(ros.topic_types().items()):
                print(f"{name} [{', '.join(types)}]" if args.show_types else name)
            return 0
        type_name = ros.wait_topic(args.topic)
        msg_type = import_type(type_name)
        if args.verb == "echo":
            count = {"n": 0}
            limit = 1 if args.once else args.times

            def on_msg(msg: Any) -> None:
                if limit and count["n"] >= limit:
                    return
                count["n"] += 1
                sys.stdout.write(to_yaml(msg, args.no_arr) + "---\n")
                sys.stdout.flush()

            ros.node.create_subscription(msg_type, args.topic, on_msg, ros.qos_for(args.topic))
            ros.spin_until(lambda: bool(limit) and count["n"] >= limit, None)
            return 0
        # hz
        stamps: list[float] = []
        ros.node.create_subscription(
            msg_type, args.topic, lambda _m: stamps.append(time.monotonic()), ros.qos_for(args.topic)
        )
        printed = 0
        next_print = time.monotonic() + 1.0
        while args.count <= 0 or printed < args.count:
            ros.executor.spin_once(timeout_sec=0.05)
            if time.monotonic() >= next_print:
                next_print += 1.0
                window = stamps[-(args.window + 1) :]
                if len(window) < 2:
                    print("no new messages")
                else:
                    d = [b - a for a, b in zip(window, window[1:])]
                    mean = sum(d) / len(d)
                    std = math.sqrt(sum((x - mean) ** 2 for x in d) / len(d))
                    print(f"average rate: {1.0 / mean:.3f}")
                    print(
                        f"\tmin: {min(d):.3f}s max: {max(d):.3f}s std dev: {std:.5f}s window: {len(window)}"
                    )
                sys.stdout.flush()
                printed += 1
        return 0
    finally:
        ros.close()


def cmd_service(args: argparse.Namespace) -> int:
    srv = import_type(args.service_type)
    if not hasattr(srv, "Request"):
        raise CliError(f"{args.service_type} is not a service type")
    request = srv.Request()
    if args.values:
        values = yaml.safe_load(args.values)
        if values is not None and not isinstance(values, dict):
            raise CliError("the passed value needs to be a dictionary in YAML format")
        set_fields(request, values or {})
    ros = Ros()
    try:
        print(f"requester: making request: {_repr_msg(request)}\n")
        response = ros.call(srv, args.service_name, request)
        print(f"response:\n{_repr_msg(response)}\n")
        return 0
    finally:
        ros.close()


def cmd_action(args: argparse.Namespace) -> int:
    """ros2 action send_goal NAME TYPE GOAL [-f]: ros2cli's output (goal, acceptance, result, status)."""
    from rclpy.action import ActionClient

    action = import_type(args.action_type)
    if not hasattr(action, "Goal"):
        raise CliError(f"{args.action_type} is not an action type")
    goal = action.Goal()
    values = yaml.safe_load(args.goal) if args.goal else None
    if values is not None and not isinstance(values, dict):
        raise CliError("the passed goal needs to be a dictionary in YAML format")
    set_fields(goal, values or {})
    ros = Ros()
    try:
        client = ActionClient(ros.node, action, args.action_name)
        print("Waiting for an action server to become available...")
        if not ros.spin_until(client.server_is_ready, DISCOVERY_TIMEOUT):
            raise CliError(f"action server {args.action_name} not available")
        print("Sending goal:\n" + _indent(to_yaml(goal)))

        def on_feedback(fb: Any) -> None:
            print("Feedback:\n" + _indent(to_yaml(fb.feedback)), flush=True)

        from smolvla_common.action_client import send_goal_async

        sent = send_goal_async(client, goal, feedback_callback=on_feedback if args.feedback else None)
        ros.spin_until(sent.done, None)
        handle = sent.result()
        if not handle.accepted:
            print("Goal was rejected.")
            return 1
        print(f"Goal accepted with ID: {bytes(handle.goal_id.uuid).hex()}\n", flush=True)
        result = handle.get_result_async()
        try:
            ros.spin_until(result.done, None)
        except KeyboardInterrupt:
            cancel = handle.cancel_goal_async()
            ros.spin_until(cancel.done, DISCOVERY_TIMEOUT)
            print("Canceled goal")
            ros.spin_until(result.done, DISCOVERY_TIMEOUT)
            if not result.done():
                return 0
        response = result.result()
        print("Result:\n" + _indent(to_yaml(response.result)))
        names = {1: "ACCEPTED", 2: "EXECUTING", 3: "CANCELING", 4: "SUCCEEDED", 5: "CANCELED", 6: "ABORTED"}
        print(f"Goal finished with status: {names.get(response.status, 'UNKNOWN')}")
        return 0
    finally:
        ros.close()


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip().splitlines()) + "\n"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _stamp(ns: int) -> str:
    t = time.localtime(ns // 1_000_000_000)
    sec, nsec = divmod(ns, 1_000_000_000)
    return f"{time.strftime('%b %e %Y %H:%M:%S', t)}.{nsec:09d} ({sec}.{nsec:09d})"


def cmd_bag(args: argparse.Namespace) -> int:
    from smolvla_train.bagio import BagError, open_bag

    path = Path(args.bag_path)
    try:
        with open_bag(path) as bag:
            files = sorted(
                p for p in ([path] if path.is_file() else path.iterdir()) if p.suffix in (".mcap", ".db3")
            )
            size = sum(p.stat().st_size for p in files)
            lines = [
                f"Files:             {files[0].name if files else ''}",
                *[f"                   {p.name}" for p in files[1:]],
                f"Bag size:          {_size(size)}",
                f"Storage id:        {bag.storage}",
                f"Duration:          {(bag.end_ns - bag.start_ns) / 1e9:.9f}s",
                f"Start:             {_stamp(bag.start_ns)}",
                f"End:               {_stamp(bag.end_ns)}",
                f"Messages:          {bag.message_count}",
            ]
            topics = sorted(bag.topics.values(), key=lambda t: t.name)
            for i, t in enumerate(topics):
                head = "Topic information: " if i == 0 else "                   "
                info = f"Topic: {t.name} | Type: {t.msgtype} | Count: {t.count} | Serialization Format: cdr"
                lines.append(head + info)
            if not topics:
                lines.append("Topic information: ")
            lines += ["Service:           0", "Service information: "]
    except BagError as exc:
        raise CliError(str(exc)) from exc
    print("\n".join(lines))
    return 0


def _prefix(package: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return Path(get_package_prefix(package))
    except PackageNotFoundError:
        raise CliError(f"Package '{package}' not found") from None


def cmd_run(args: argparse.Namespace) -> int:
    exe = _prefix(args.package) / "lib" / args.package / args.executable
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise CliError(f"No executable found: {args.executable} in package {args.package}")
    from smolvla_train.recording.processes import apply_ros_environment

    apply_ros_environment()
    os.execv(str(exe), [str(exe), *args.argv])
    return 0  # not reached


def cmd_launch(args: argparse.Namespace) -> int:
    from ament_index_python.packages import get_package_share_directory

    _prefix(args.package)
    file = Path(get_package_share_directory(args.package)) / "launch" / args.launch_file
    if not file.exists():
        raise CliError(
            f"file '{args.launch_file}' was not found in the share directory of package '{args.package}'"
        )
    runner = file.resolve().parents[1] / "tools" / "mini_launch.py"  # the workspace's launch stand-ins
    if not runner.is_file():
        raise CliError(
            f"the launch stand-ins ({runner}) are not next to {file.resolve()} (a source checkout)"
        )
    from smolvla_train.recording.processes import apply_ros_environment

    apply_ros_environment()
    os.execv(sys.executable, [sys.executable, str(runner), str(file.resolve()), *args.argv])
    return 0  # not reached


def _is_shim(path: Path) -> bool:
    """True for a command written by :func:`install_shim` (not a ROS install's ros2cli)."""
    try:
        return "smolvla_train.ros2cli stand-in" in path.read_text(errors="replace")[:500]
    except OSError:
        return False


def install_shim(bin_dir: str) -> int:
    """Write ``BIN_DIR/ros2`` running this module, unless a ros2 of a ROS install is on PATH; and
    ``BIN_DIR/smolvla_train`` (colcon installs console scripts in ``lib/<package>/``, off the PATH) unless
    one is on PATH already."""
    commands = {"ros2": "smolvla_train.ros2cli", "smolvla_train": "smolvla_train.cli"}
    for name, module in commands.items():
        target = Path(bin_dir) / name
        existing = shutil.which(name)
        if existing and Path(existing).resolve() != target.resolve() and not _is_shim(Path(existing)):
            print(f"[ros2cli] {name} is installed ({existing}): not installing the stand-in")
            continue
        target.write_text(
            f'#!/bin/sh\n# smolvla_train.ros2cli stand-in\nexec "{sys.executable}" -m {module} "$@"\n'
        )
        target.chmod(0o755)
        print(f"[ros2cli] installed {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--install-shim", metavar="BIN_DIR", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="Commands")
    p = sub.add_parser("run", help="run a package specific executable")
    p.add_argument("package")
    p.add_argument("executable")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("launch", help="run a launch file (launch stand-ins: tools/mini_launch.py)")
    p.add_argument("package")
    p.add_argument("launch_file")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="name:=value launch arguments")
    p.set_defaults(func=cmd_launch)
    p = sub.add_parser("param", help="various param related sub-commands")
    psub = p.add_subparsers(dest="verb", required=True)
    for verb, extra in (("get", ["name"]), ("set", ["name", "value"]), ("list", []), ("dump", [])):
        q = psub.add_parser(verb)
        q.add_argument("node")
        for e in extra:
            q.add_argument(e)
        q.set_defaults(func=cmd_param)
    p = sub.add_parser("topic", help="various topic related sub-commands")
    tsub = p.add_subparsers(dest="verb", required=True)
    q = tsub.add_parser("list")
    q.add_argument("-t", "--show-types", action="store_true")
    q.set_defaults(func=cmd_topic)
    q = tsub.add_parser("echo")
    q.add_argument("topic")
    q.add_argument("--once", action="store_true", help="print the first message and exit")
    q.add_argument("--times", type=int, default=0, help="print this many messages and exit")
    q.add_argument("--no-arr", action="store_true", help="do not print array fields of messages")
    q.set_defaults(func=cmd_topic)
    q = tsub.add_parser("hz")
    q.add_argument("topic")
    q.add_argument("-w", "--window", type=int, default=10000, help="window size, in # of messages")
    q.add_argument("--count", type=int, default=0, help="stop after this many reports (0: until Ctrl-C)")
    q.set_defaults(func=cmd_topic)
    p = sub.add_parser("service", help="various service related sub-commands")
    ssub = p.add_subparsers(dest="verb", required=True)
    q = ssub.add_parser("call")
    q.add_argument("service_name")
    q.add_argument("service_type")
    q.add_argument("values", nargs="?", default="")
    q.set_defaults(func=cmd_service)
    p = sub.add_parser("action", help="various action related sub-commands")
    asub = p.add_subparsers(dest="verb", required=True)
    q = asub.add_parser("send_goal")
    q.add_argument("action_name")
    q.add_argument("action_type")
    q.add_argument("goal", nargs="?", default="")
    q.add_argument("-f", "--feedback", action="store_true", help="echo feedback messages for the goal")
    q.set_defaults(func=cmd_action)
    p = sub.add_parser("bag", help="various rosbag related sub-commands")
    bsub = p.add_subparsers(dest="verb", required=True)
    q = bsub.add_parser("info")
    q.add_argument("bag_path")
    q.set_defaults(func=cmd_bag)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.install_shim:
        return install_shim(args.install_shim)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
