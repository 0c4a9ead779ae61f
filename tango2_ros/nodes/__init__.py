"""Thin rclpy lifecycle nodes, one per file; each module has a `main()` that is also its console script."""
