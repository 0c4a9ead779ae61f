"""ros2 launch tango2_ros fleet-device.launch.py — the nodes of config/profiles/fleet-device.yaml."""
from tango2_ros.bringup.launch_description import generate_profile_launch_description


def generate_launch_description():
    return generate_profile_launch_description("fleet-device")
