"""One parameter scheme for every node: each parameter declared once, in plain Python.

A node lists its parameters as :class:`Param` entries (name, default, kind, range or choices, description,
start-up only or tunable) in a :class:`ParameterTable`; :mod:`smolvla_common.node_parameters` declares them
on the node with ``ParameterDescriptor``s built from the same entries, validates start-up values and run-time
changes here, and hands the validated values to the node afterwards. ``config/<node>.yaml`` is checked
against the table by a test (``to_yaml`` writes the same layout).

Rules every node gets from this one place:

- a ``double`` accepts an integer (``fps:=30``, ``real_time_factor:=1``) and stores it as a float;
- an ``int`` does not accept a float, a ``bool`` only true/false, a ``string`` only text (``accept_int``:
  also an integer, kept as its text, e.g. a camera index);
- every problem is a :class:`ParameterError` whose message names the parameter, what is allowed (range,
  choices, type) and the value given;
- ``read_only`` parameters are read at start-up only; run-time changes of them are refused.

Plain Python (no rclpy), so tools and tests read the same declarations.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("bool", "int", "double", "string", "bool_array", "int_array", "double_array", "string_array")
_ARRAY_ITEM = {"bool_array": "bool", "int_array": "int", "double_array": "double", "string_array": "string"}
_NAMES = {"bool": "true or false", "int": "an integer", "double": "a number", "string": "a string"}


class ParameterError(ValueError):
    """A parameter value that is not allowed; the message names the parameter and what is allowed."""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a double"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclass(frozen=True)
class Param:
    """One parameter: the single declaration of its name, default, kind, range and meaning."""

    name: str
    default: Any
    description: str
    kind: str  # one of KINDS
    low: float | None = None  # inclusive range of int/double (and of every item of their arrays)
    high: float | None = None
    choices: tuple[str, ...] = ()  # allowed values of a string (or of every item of a string array)
    read_only: bool = False  # read at start-up only
    accept_int: bool = False  # string: an integer is accepted and kept as its text
    #: Extra check of a well-typed value: returns the reason (without the parameter's name) or None.
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")

    @property
    def item_kind(self) -> str:
        return _ARRAY_ITEM.get(self.kind, self.kind)

    @property
    def is_array(self) -> bool:
        return self.kind in _ARRAY_ITEM

    def allowed(self) -> str:
        """What the parameter accepts, in words (used in messages and descriptors)."""
        item = self.item_kind
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        else:
            text = _NAMES[item] + (" or an integer" if item == "string" and self.accept_int else "")
            if item in ("int", "double") and (self.low is not None or self.high is not None):
                lo = "-inf" if self.low is None else _fmt(self.low)
                hi = "inf" if self.high is None else _fmt(self.high)
                text += f" in [{lo}, {hi}]"
        return f"a list whose items are each {text}" if self.is_array else text

    def _error(self, value: Any, why: str = "") -> ParameterError:
        got = f"{value!r}" if not isinstance(value, (list, tuple)) else repr(list(value))
        reason = f"; {why}" if why else ""
        return ParameterError(
            f"parameter '{self.name}' must be {self.allowed()}, got {got} ({_type_name(value)}){reason}"
        )

    def _coerce_item(self, value: Any, whole: Any) -> Any:
        kind = self.item_kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise self._error(whole)
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._error(whole)
            out: Any = int(value)
        elif kind == "double":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self._error(whole)
            out = float(value)
            if not math.isfinite(out):
                raise self._error(whole)
        else:  # string
            if self.accept_int and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise self._error(whole)
            if self.choices and value not in self.choices:
                raise self._error(whole)
            return value
        if (self.low is not None and out < self.low) or (self.high is not None and out > self.high):
            raise self._error(whole)
        return out

    def coerce(self, value: Any) -> Any:
        """The value in its declared kind (integers become floats for doubles); ParameterError otherwise."""
        if self.is_array:
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise self._error(value)
            out: Any = [self._coerce_item(v, value) for v in value]
        else:
            out = self._coerce_item(value, value)
        if self.check is not None:
            why = self.check(out)
            if why:
                raise self._error(value, why)
        return out


class ParameterTable:
    """The parameters of one node, in declaration order, with an optional check across parameters."""

    def __init__(
        self,
        node: str,
        params: Iterable[Param],
        check: Callable[[Mapping[str, Any]], str | None] | None = None,
        source: str = "",
    ) -> None:
        self.node = node
        self.params: dict[str, Param] = {}
        for p in params:
            if p.name in self.params:
                raise ValueError(f"parameter {p.name} declared twice for {node}")
            p.coerce(p.default)  # a default that breaks its own declaration is a programming error
            self.params[p.name] = p
        self.check = check
        self.source = source  # 'package.module:NAME' of the table (for the YAML header)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params.values())

    def __contains__(self, name: object) -> bool:
        return name in self.params

    def __getitem__(self, name: str) -> Param:
        return self.params[name]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.coerce(p.default) for p in self}

    def coerce_all(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter (missing or None -> default) in its kind; ParameterError naming every problem."""
        out, problems = {}, []
        for p in self:
            v = values.get(p.name)
            try:
                out[p.name] = p.coerce(p.default if v is None else v)
            except ParameterError as exc:
                problems.append(str(exc))
        if not problems and self.check is not None:
            why = self.check(out)
            if why:
                problems.append(why)
        if problems:
            raise ParameterError("; ".join(problems))
        return out

    def validate_change(self, current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        """The values after ``changes`` (run time): read-only ones refused, each checked, then the whole set.
        Returns the coerced changes; raises ParameterError with the reason."""
        coerced = {}
        for name, value in changes.items():
            p = self.params.get(name)
            if p is None:
                continue  # not ours (e.g. use_sim_time)
            if p.read_only:
                raise ParameterError(
                    f"parameter '{name}' is read-only at run time (read at start-up): "
                    "restart the node to change it"
                )
            coerced[name] = p.coerce(value)
        if self.check is not None:
            why = self.check({**current, **coerced})
            if why:
                raise ParameterError(why)
        return coerced

    # -- config/<node>.yaml -------------------------------------------------------------------------------
    def to_yaml(self) -> str:
        """``config/<node>.yaml`` text: every parameter with its default and its description as a comment."""
        lines = [f"# {self.node} parameters with their defaults, written from their declarations"]
        if self.source:
            lines.append(f"#   python -m smolvla_common.parameters {self.source} --write <this file>")
        lines += [
            "# (a test checks this file against them). Pass it with --ros-args --params-file <this file>;",
            "# `/**:` makes it apply also when the node is renamed.",
            "/**:",
            "  ros__parameters:",
        ]
        for p in self:
            note = f"{p.description} Allowed: {p.allowed()}" + ("; start-up only." if p.read_only else ".")
            lines += textwrap.wrap(note, 110, initial_indent="    # ", subsequent_indent="    #   ")
            lines.append(f"    {p.name}: {_yaml_value(p.coerce(p.default))}")
        return "\n".join(lines) + "\n"

    def check_yaml(self, data: Mapping[str, Any]) -> list[str]:
        """Differences between a parsed ``config/<node>.yaml`` and the declarations (empty = they agree)."""
        sections = [v.get("ros__parameters") for v in data.values() if isinstance(v, Mapping)]
        sections = [s for s in sections if isinstance(s, Mapping)]
        if len(sections) != 1:
            return [f"expected one '<node>: ros__parameters:' section, found {len(sections)}"]
        values = sections[0]
        problems = []
        for name in values:
            if name not in self.params:
                problems.append(f"'{name}' is not a parameter of {self.node}")
        for p in self:
            if p.name not in values:
                problems.append(f"'{p.name}' (default {p.default!r}) is missing")
                continue
            given, default = values[p.name], p.coerce(p.default)
            if not _same(given, default, p):
                problems.append(f"'{p.name}': the file says {given!r}, the declaration {default!r}")
        return problems


def _same(given: Any, default: Any, p: Param) -> bool:
    """Equal in value and in YAML type (a double written as 1 would be an integer in the file)."""
    if p.is_array:
        return (
            isinstance(given, list)
            and len(given) == len(default)
            and all(_same_item(g, d, p.item_kind) for g, d in zip(given, default))
        )
    return _same_item(given, default, p.kind)


def _same_item(given: Any, default: Any, kind: str) -> bool:
    if kind == "double":
        return isinstance(given, float) and math.isclose(given, default, rel_tol=1e-12, abs_tol=1e-12)
    if kind == "int":
        return isinstance(given, int) and not isinstance(given, bool) and given == default
    if kind == "bool":
        return isinstance(given, bool) and given == default
    return isinstance(given, str) and given == default


def _yaml_value(value: Any) -> str:
    """YAML text of a parameter value that YAML 1.1 readers (PyYAML, rcl) type as declared."""
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + (e + exponent if e else "")
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def load_table(spec: str) -> ParameterTable:
    """The table named ``package.module:NAME``."""
    import importlib

    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'package.module:TABLE', got {spec!r}")
    table = getattr(importlib.import_module(module), attr)
    # the class as the nodes import it (this file may also run as __main__)
    if not isinstance(table, importlib.import_module("smolvla_common.parameters").ParameterTable):
        raise ValueError(f"{spec} is a {type(table).__name__}, not a ParameterTable")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m smolvla_common.parameters MODULE:TABLE [--write FILE]``: print or write config YAML."""
    import argparse
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m smolvla_common.parameters",
        description="Write a node's config/<node>.yaml (every parameter, its default and its description) "
        "from its parameter table.",
    )
    parser.add_argument("table", help="the table, e.g. smolvla_sim.nodes.sim_node:PARAMETERS")
    parser.add_argument("--write", metavar="FILE", help="write the YAML to FILE (default: print it)")
    args = parser.parse_args(argv)
    try:
        table = load_table(args.table)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = table.to_yaml()
    if args.write:
        path = Path(args.write)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(text)
        tmp.replace(path)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
