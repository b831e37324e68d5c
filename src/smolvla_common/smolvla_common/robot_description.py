"""``/robot_description`` on the ROS graph: who publishes it, with which QoS, and how it is read.

The driver and the simulator publish the URDF of their arm with its calibrated joint limits
(``so_arm_description.robot_model.build_urdf``) as std_msgs/String, reliable + transient local, depth 1 --
the QoS robot_state_publisher uses, so late joiners (action queue, policy server, rviz, the episode recorder)
get the one message. Readers turn it into numbers with ``so_arm_description.robot_model.limits_from_urdf``.

rclpy and std_msgs are imported when a function is called, not at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Relative topic name (resolves to ``/robot_description`` in the root namespace).
TOPIC = "robot_description"


def qos() -> Any:
    """Reliable, transient local, keep last 1 (robot_state_publisher's QoS for the description)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=1,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def publish(node: Any, urdf_text: str, publisher: Any = None) -> Any:
    """Publish ``urdf_text`` (creating the publisher on first use); returns the publisher to keep."""
    from std_msgs.msg import String

    if publisher is None:
        publisher = node.create_publisher(String, TOPIC, qos())
    publisher.publish(String(data=urdf_text))
    return publisher


def subscribe(node: Any, callback: Callable[[str], None], callback_group: Any = None) -> Any:
    """Call ``callback(urdf_text)`` for the latched description (and any later one)."""
    from std_msgs.msg import String

    return node.create_subscription(
        String, TOPIC, lambda msg: callback(str(msg.data)), qos(), callback_group=callback_group
    )
