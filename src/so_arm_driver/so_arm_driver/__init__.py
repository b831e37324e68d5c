"""SO-100/SO-101 hardware interface over the Feetech STS3215 bus (lerobot-compatible calibration), a servo-
bus emulator, camera nodes and robot descriptions.
"""
