"""Rerun viewer of the suite (core without rclpy, local web server)."""
