"""``ActionClient.send_goal_async`` without the goal-future leak of rclpy 9.1.2 (issue 19, memory soak).

rclpy 9.1.2's ``send_goal_async`` creates the goal's future twice (upstream ros2/rclpy#1532: a backported fix
left the old lines next to the new ones): the first one is registered with the client (its ``_futures`` list,
which the executor walks on every action event) and then replaced in the pending goal requests by the second,
so it never completes and is never removed. One Future per goal stays for the life of the process: the action
queue sends a goal per chunk, ~1.6 a second in the soak, and its heap grew by ~46 kB/min with them (found with
tracemalloc in the 20-minute soak). :func:`send_goal_async` removes that orphan; on an rclpy without the bug
there is none, and nothing is removed.
"""

from __future__ import annotations

import contextlib
from typing import Any


def _pending_ids(client: Any) -> set[int]:
    ids: set[int] = set()
    for name in ("_pending_goal_requests", "_pending_cancel_requests", "_pending_result_requests"):
        # list(): one C-level copy; the executor's threads remove entries while this runs (no "dictionary
        # changed size during iteration")
        ids |= {id(f) for f in list(getattr(client, name, {}).values())}
    return ids


def orphaned_futures(client: Any) -> list[Any]:
    """The futures ``client`` keeps that belong to no pending request and are not done (leaked)."""
    futures = getattr(client, "_futures", None)
    if not isinstance(futures, list):
        return []
    pending = _pending_ids(client)
    return [f for f in list(futures) if id(f) not in pending and not f.done()]


def send_goal_async(client: Any, goal: Any, **kwargs: Any) -> Any:
    """``client.send_goal_async(goal, **kwargs)``, then drop the orphaned goal future rclpy 9.1.2 leaves in
    the client (only futures added by this call that no pending request owns and that are not done)."""
    futures = getattr(client, "_futures", None)
    before = {id(f) for f in futures} if isinstance(futures, list) else None
    future = client.send_goal_async(goal, **kwargs)
    if before is None:
        return future
    lock = getattr(client, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        for orphan in orphaned_futures(client):
            if id(orphan) not in before and orphan is not future:
                with contextlib.suppress(ValueError):
                    client.remove_future(orphan)
    return future
