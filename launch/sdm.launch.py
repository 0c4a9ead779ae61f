"""ros2 launch tango2_ros sdm.launch.py — the nodes of config/profiles/sdm.yaml."""
from tango2_ros.bringup.launch_description import generate_profile_launch_description


def generate_launch_description():
    return generate_profile_launch_description("sdm")
