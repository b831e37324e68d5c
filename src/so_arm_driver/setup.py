from setuptools import find_packages, setup

PACKAGE = "so_arm_driver"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        (
            "share/" + PACKAGE + "/config",
            ["../../config/camera_node.yaml", "../../config/so_arm_driver.yaml", "../../config/teleop.yaml"],
        ),
    ],
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description=(
        "SO-100/SO-101 hardware interface over the Feetech STS3215 bus (lerobot-compatible "
        "calibration), a servo-bus emulator and camera nodes."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "so_arm_driver = so_arm_driver.nodes.driver_node:main",
            "camera_node = so_arm_driver.nodes.camera_node:main",
            "so_arm_emulator = so_arm_driver.emulator:main",
            "so_arm_calibrate = so_arm_driver.calibrate_cli:main",
            "teleop = so_arm_driver.nodes.teleop_node:main",
        ],
    },
)
