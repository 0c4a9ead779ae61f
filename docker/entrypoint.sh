#!/usr/bin/env bash
# Source ROS 2 and the workspace, then run the command (default: the llm profile).
set -e
source /opt/ros/kilted/setup.bash
source /ws/install/setup.bash
exec "$@"
