from setuptools import find_packages, setup

PACKAGE = "smolvla_sim"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/config", ["../../config/sim_node.yaml"]),
    ],
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description=(
        "MuJoCo simulation of the SO-101/SO-100 arm with cameras and tasks, "
        "behind the same ROS interface as the real arm."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["sim_node = smolvla_sim.nodes.sim_node:main"],
    },
)
