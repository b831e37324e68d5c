"""What the real ``launch``/``launch_ros`` libraries make of a launch file, without starting a process.

``python real_launch_plan.py FILE '{"name": "value", ...}'`` prints JSON: for every node that would start
(visited in order, its condition true) its parameter values as launch_ros evaluates them and whether its
executable resolves (``ExecutableInPackage``); the profile variables afterwards; or the error that stops the
launch and the nodes visited before it (those ``ros2 launch`` would already have started). Entities other
than nodes are visited with a real ``LaunchContext`` (arguments, environment, opaque functions). Used by
test_launch_semantics.py to compare tools/mini_launch.py with the real libraries where they are installed
(a ROS 2 install; not the PyPI wheels).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def plan(path: str, arguments: dict[str, str]) -> dict[str, Any]:
    from launch import LaunchContext
    from launch_ros.actions import Node
    from launch_ros.substitutions import ExecutableInPackage
    from launch_ros.utilities import evaluate_parameters, normalize_parameters

    spec = importlib.util.spec_from_file_location("launch_file", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    nodes: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {"nodes": nodes, "error": None, "started": []}

    def visit(entity: Any) -> None:
        if isinstance(entity, Node):
            if entity.condition is not None and not entity.condition.evaluate(context):
                return
            label = getattr(entity, "smolvla_label", None) or entity.node_executable
            ExecutableInPackage(package=entity.node_package, executable=entity.node_executable).perform(
                context
            )
            params: dict[str, Any] = {}
            for item in evaluate_parameters(context, normalize_parameters(entity.smolvla_parameters)):
                if isinstance(item, dict):
                    params.update({k: _jsonable(v) for k, v in item.items()})
            nodes[label] = params
            result["started"].append(label)
            return
        for sub in entity.visit(context) or []:
            visit(sub)

    try:
        visit(description)
    except Exception as exc:  # noqa: BLE001 (reported)
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["env"] = {
        k: os.environ.get(k) for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    }
    return result


if __name__ == "__main__":
    print(json.dumps(plan(sys.argv[1], json.loads(sys.argv[2]))))
