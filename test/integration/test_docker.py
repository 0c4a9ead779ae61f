"""No Docker engine runs here: check that the Dockerfile and the compose file reference what exists."""
import re
from pathlib import Path

import yaml

from tango2_ros.bringup.profiles import available_profiles

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"


def test_dockerfile_starts_from_ros2_kilted_and_builds_with_colcon():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM ros:kilted", text, re.M)
    assert "colcon build" in text and "/opt/ros/kilted/setup.bash" in text


def test_every_path_the_dockerfile_copies_or_builds_exists():
    text = DOCKERFILE.read_text()
    for source in re.findall(r"^COPY\s+(\S+)\s+\S+", text, re.M):
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    for base in re.search(r"--base-paths ([^-\n]+)", text).group(1).split():
        relative = Path(base).relative_to("src/tango2_ros")
        assert (REPO / relative / "package.xml").is_file(), f"no package at {base}"


def test_compose_has_one_service_per_profile_and_each_launch_file_exists():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == set(available_profiles())
    for name, service in services.items():
        package, launch_file = service["command"][2:4]
        assert package == "tango2_ros" and launch_file == f"{name}.launch.py"
        assert (REPO / "launch" / launch_file).is_file()
        assert (REPO / service["build"]["dockerfile"]).resolve() == DOCKERFILE
