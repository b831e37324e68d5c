"""Issue 10, defect 5: ``config/<node>.yaml`` agrees with the node's parameter declarations (one source
of truth). Each file lists exactly the declared parameters with their declared defaults, in the declared
YAML type (a double written as ``30`` would reach the node as an integer). Regenerate a file with
``python -m smolvla_common.parameters <table> --write config/<node>.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smolvla_common.parameters import load_table

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"

#: config file -> the table its node declares (the node's package must be importable to check it).
TABLES = {
    "sim_node.yaml": "smolvla_sim.nodes.sim_node:PARAMETERS",
    "so_arm_driver.yaml": "so_arm_driver.nodes.driver_node:PARAMETERS",
    "camera_node.yaml": "so_arm_driver.nodes.camera_node:PARAMETERS",
    "teleop.yaml": "so_arm_driver.nodes.teleop_node:PARAMETERS",
    "policy_server.yaml": "smolvla_policy.server.config:TABLE",
    "action_queue.yaml": "smolvla_policy.nodes.action_queue:PARAMETERS",
    "episode_recorder.yaml": "smolvla_train.nodes.episode_recorder:PARAMETERS",
    "viewer.yaml": "smolvla_train.nodes.viewer:PARAMETERS",
}
#: YAML files in config/ that are not node parameter files.
NOT_PARAMETER_FILES: set[str] = set()


def _table(spec: str):  # type: ignore[no-untyped-def]
    pytest.importorskip(spec.split(".")[0])
    return load_table(spec)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_config_file_matches_the_declarations(name):
    table = _table(TABLES[name])
    data = yaml.safe_load((CONFIG_DIR / name).read_text())
    problems = table.check_yaml(data)
    assert not problems, (
        f"config/{name} disagrees with {TABLES[name]}:\n  "
        + "\n  ".join(problems)
        + f"\nregenerate: python -m smolvla_common.parameters {TABLES[name]} --write config/{name}"
    )


@pytest.mark.parametrize("name", sorted(TABLES))
def test_generated_yaml_is_the_declarations(name):
    table = _table(TABLES[name])
    assert table.check_yaml(yaml.safe_load(table.to_yaml())) == []


def test_every_node_config_file_is_checked():
    files = {p.name for p in CONFIG_DIR.glob("*.yaml")} - NOT_PARAMETER_FILES
    assert files <= set(TABLES), f"config files without a declaration table: {sorted(files - set(TABLES))}"
