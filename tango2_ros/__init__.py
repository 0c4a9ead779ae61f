"""TANGO2-ROS: on-device generative AI for ROS 2 edge machines.

Layout: `core/` holds ROS-free logic (model runtimes, registry, domain rules) that is unit-tested without rclpy;
`nodes/` holds thin rclpy lifecycle nodes, one per file; `bringup/` reads launch profiles and supervises node
processes; `ros/` holds small rclpy helpers shared by the CLI and nodes; `cli/` is the `tango2` command.
"""
__version__ = "0.1.0"
