"""The one place where domain values become ROS messages and back (`*_to_ros` / `*_from_ros`).

The domain packages (`core`, `sds`, `sdf`, `sdm`, `builder`) never import rclpy or a message package; nodes,
the simulators' ROS harness and the CLI convert here. Every table between a domain name and a message code has
its inverse beside it, and the round trips are tested.
"""
