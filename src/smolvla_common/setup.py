from setuptools import find_packages, setup

PACKAGE = "smolvla_common"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ],
    include_package_data=True,
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="smolvla_ros maintainers",
    maintainer_email="maintainers@smolvla-ros.invalid",
    description="Shared node plumbing of smolvla_ros: image conversion and the nodes' common main().",
    license="Apache-2.0",
)
