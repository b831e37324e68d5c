from setuptools import find_packages, setup

PACKAGE = "smolvla_train"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/config", ["../../config/episode_recorder.yaml"]),
    ],
    include_package_data=True,
    package_data={PACKAGE: ["configs/*.json"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description="rosbag2 to LeRobot v3 dataset conversion and SmolVLA finetuning.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "smolvla_train = smolvla_train.cli:main",
            "episode_recorder = smolvla_train.nodes.episode_recorder:main",
            "finetune = smolvla_train.finetune:main",
            "viewer = smolvla_train.nodes.viewer:main",
            "bag2lerobot = smolvla_train.bag2lerobot:main",
            "lerobot2bag = smolvla_train.lerobot2bag:main",
        ],
    },
)
