"""Facts about the SO-100 / SO-101 arms: joint names, limits, URDFs, forward kinematics, unit mappings.

Pure Python (numpy only): no rclpy, no Feetech SDK, no MuJoCo. Every other package reads the arm's facts here.
"""
