"""Small pieces every smolvla_ros node package shares: sensor_msgs/Image <-> numpy conversion and the nodes'
common ``main()``. No robot facts (those are in so_arm_description), no hardware, no model."""
