"""Recording demonstrations into rosbag2 bags, one bag per episode (plain Python, no rclpy).

- :mod:`.typedefs`: message definitions (MCAP schemas) and type hashes of installed ROS message types.
- :mod:`.bag`: one episode bag written under a temporary name and renamed when complete; recovery of a
  partial bag left by a crash; listing the finished bags of a directory.
- :mod:`.recorder`: the episode recorder core (topics, a writer thread, counts, losses, episode index,
  discard-last), driven by the ``episode_recorder`` node.
- :mod:`.sim_record`: recording scripted-expert episodes in simulation end to end
  (``smolvla_train record-sim``).
"""
