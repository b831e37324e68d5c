"""rosbag2 to LeRobot v3 dataset conversion and SmolVLA finetuning."""
