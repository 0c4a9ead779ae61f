"""The tango2_ros ament_python package (the repository root).

Builds with `colcon build` on a machine with ROS 2 installed, and with `pip install` into a venv that carries
ROS 2 from PyPI wheels (see the README). Node executables are console scripts named like their module in
`tango2_ros/nodes/`, so `ros2 run tango2_ros llm_node` and `tango2 launch` start the same code.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "tango2_ros"
NODE_EXECUTABLES = ["llm_node", "model_manager", "colreg_node", "nmea_bridge", "tracker_node", "scene_llm", "perception_node",
                    "greenhouse_bridge", "farm_controller", "safety_supervisor", "modbus_bridge", "mqtt_broker",
                    "ct_report", "llm_api", "console", "foxglove_server", "fleet_agent"]


def tree(folder: str, pattern: str) -> list[str]:
    return sorted(glob(f"{folder}/{pattern}"))


def releases() -> list[tuple[str, list[str]]]:
    """The trained releases kept in the repository (models/releases/<name>/<version>/), installed as they are."""
    return [(f"share/{PACKAGE}/{folder}", tree(folder, "*")) for folder in sorted(glob("models/releases/*/*"))]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={f"{PACKAGE}.console": ["static/*"]},  # the console's page, served from the package
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", tree("launch", "*.launch.py")),
        (f"share/{PACKAGE}/config", tree("config", "*.*")),
        (f"share/{PACKAGE}/config/profiles", tree("config/profiles", "*.yaml")),
        *releases(),
    ],
    install_requires=["setuptools", "pyyaml", "numpy", "jsonschema"],
    zip_safe=True,
    maintainer="TANGO2-ROS developers",
    maintainer_email="tango2-ros@example.org",
    description="On-device generative AI for ROS 2 edge machines",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "tango2 = tango2_ros.cli:main",
            *[f"{name} = {PACKAGE}.nodes.{name}:main" for name in NODE_EXECUTABLES],
        ],
    },
)
