"""The policy server's plain-Python core (no rclpy): parameters (:mod:`.config`), goal checking and conversion
(:mod:`.conversion`), the goal scheduler (:mod:`.scheduler`), the backends (:mod:`.backends`,
:mod:`.smolvla_backend`) and the message builders (:mod:`.builders`). The ROS node is
:mod:`smolvla_policy.nodes.policy_server`."""
