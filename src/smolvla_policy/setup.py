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
    ],
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description="SmolVLA model (plain PyTorch, lerobot-checkpoint compatible), the PredictChunk policy server and the asynchronous action-queue node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_server = smolvla_policy.nodes.policy_server:main",
            "action_queue = smolvla_policy.nodes.action_queue:main"
        ],
    },
)
