"""ROS-free logic: model runtimes, the artifact registry, domain rules. Nothing here imports rclpy."""
