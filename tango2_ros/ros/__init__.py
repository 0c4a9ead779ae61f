"""Small rclpy helpers shared by the nodes and the CLI."""
