"""MuJoCo simulation of the SO-101/SO-100 arm with cameras and tasks, behind the real arm's ROS interface."""
