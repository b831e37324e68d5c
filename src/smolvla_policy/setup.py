from glob import glob

from setuptools import find_packages, setup

PACKAGE = "smolvla_policy"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        # The workspace-level launch files and node configurations live at the repository root (launch/,
        # config/); smolvla_policy, the package that ties the graph together, installs them so that
        # `ros2 launch smolvla_policy ...` and get_package_share_directory("smolvla_policy") find them.
        ("share/" + PACKAGE + "/launch", sorted(glob("../../launch/*.launch.py"))),
        (
            "share/" + PACKAGE + "/config",
            sorted(glob("../../config/*.yaml") + glob("../../config/*.xml") + glob("../../config/*.rviz")),
        ),
    ],
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description=(
        "SmolVLA model (plain PyTorch, lerobot-checkpoint compatible), the PredictChunk policy "
        "server and the asynchronous action-queue node."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_server = smolvla_policy.nodes.policy_server:main",
            "action_queue = smolvla_policy.nodes.action_queue:main",
        ],
    },
)
