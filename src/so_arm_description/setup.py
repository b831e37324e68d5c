from setuptools import find_packages, setup

PACKAGE = "so_arm_description"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/urdf", ["urdf/so101.urdf", "urdf/so100.urdf"]),
        ("share/" + PACKAGE + "/launch", ["launch/description.launch.py"]),
    ],
    include_package_data=True,
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description=(
        "SO-100/SO-101 arm facts: URDFs, joint names and limits, forward kinematics and the ROS radians <-> "
        "lerobot unit mapping (pure Python)."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "print_urdf = so_arm_description.robot_model:main",
        ],
    },
)
