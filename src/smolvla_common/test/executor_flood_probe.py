"""Probe for test_executor_shutdown: a MultiThreadedExecutor spinning in a thread, its worker pool full of
queued callbacks, is shut down (``plain``: ``executor.shutdown``; ``fixed``: ``shutdown_executor``)."""

from __future__ import annotations

import gc
import sys
import threading
import time

import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from std_msgs.msg import String

from smolvla_common.executor_shutdown import shutdown_executor


def main(mode: str, domain_id: int) -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node("flooded", context=ctx)
    group = ReentrantCallbackGroup()
    for k in range(8):
        node.create_subscription(String, f"t{k}", lambda _m: time.sleep(0.02), 200, callback_group=group)
    executor = MultiThreadedExecutor(num_threads=2, context=ctx)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    pub_node = rclpy.create_node("flooder", context=ctx)
    pubs = [pub_node.create_publisher(String, f"t{k}", 200) for k in range(8)]
    deadline = time.monotonic() + 10.0
    while any(p.get_subscription_count() == 0 for p in pubs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(40):
        for p in pubs:
            p.publish(String(data="x"))
    time.sleep(0.2)  # callbacks in flight and queued
    if mode == "plain":
        executor.shutdown(timeout_sec=5.0)
    else:
        shutdown_executor(executor, thread)
    thread.join(5.0)
    node.destroy_node()
    pub_node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    del executor
    gc.collect()
    print("probe done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
