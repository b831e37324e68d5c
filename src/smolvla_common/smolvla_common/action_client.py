"""``ActionClient.send_goal_async`` without the two defects of rclpy 9.1.2's (upstream ros2/rclpy#1532: a
backported fix left the old lines next to the new ones, so the goal's future is created twice):

1. **A goal whose answer is lost** (found by looping the policy server's tests on a loaded machine: "the
   policy server did not answer the goal request" after 120 s). The first future is registered under the
   client's lock together with the request; the second one replaces it *after* the lock is released. When the
   executor takes the server's answer in between, it completes the first future and forgets the request; the
   caller gets the second one, which never completes. The action queue then waited for its request timeout.
2. **A leak** (issue 19, memory soak): otherwise the first future stays in the client's ``_futures`` list
   (walked by the executor on every action event), never completed, never removed: one per goal, ~46 kB/min
   of the action queue's heap.

:func:`send_goal_async` sends the request and registers its one future under the client's lock, as rclpy's
other requests do, with the feedback callback registered before the request leaves (no early feedback
missed). An rclpy whose client lacks the attributes this needs gets its own ``send_goal_async``, followed by
the removal of an orphaned future if one was left.
"""

from __future__ import annotations

import contextlib
from typing import Any

_NEEDED = (
    "_action_type",
    "_client_handle",
    "_lock",
    "_pending_goal_requests",
    "_goal_sequence_number_to_goal_id",
    "_feedback_callbacks",
    "_remove_pending_goal_request",
    "_generate_random_uuid",
    "add_future",
)


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


def send_goal_async(client: Any, goal: Any, feedback_callback: Any = None, goal_uuid: Any = None) -> Any:
    """Send ``goal`` through the rclpy ``ActionClient`` ``client``; returns the Future of its goal handle
    (completed when the server accepts or rejects it), like ``client.send_goal_async``."""
    if all(hasattr(client, name) for name in _NEEDED):
        return _send(client, goal, feedback_callback, goal_uuid)
    return _send_and_drop_orphan(client, goal, feedback_callback, goal_uuid)


def _send(client: Any, goal: Any, feedback_callback: Any, goal_uuid: Any) -> Any:
    from rclpy.task import Future

    if not isinstance(goal, client._action_type.Goal):
        raise TypeError(f"Expected goal type ({client._action_type.Goal}) but received ({type(goal)})")
    request = client._action_type.Impl.SendGoalService.Request()
    request.goal_id = client._generate_random_uuid() if goal_uuid is None else goal_uuid
    request.goal = goal
    key = bytes(request.goal_id.uuid)
    if feedback_callback is not None:
        client._feedback_callbacks[key] = feedback_callback
    future = Future()
    try:
        with client._lock:  # the executor takes the answer under this lock: it finds the future registered
            sequence_number = client._client_handle.send_goal_request(request)
            if sequence_number in client._pending_goal_requests:
                raise RuntimeError(f"Sequence ({sequence_number}) conflicts with pending goal request")
            client._pending_goal_requests[sequence_number] = future
            client._goal_sequence_number_to_goal_id[sequence_number] = request.goal_id
            future.add_done_callback(client._remove_pending_goal_request)
            client.add_future(future)  # so the executor is aware of it
    except BaseException:
        if feedback_callback is not None:
            client._feedback_callbacks.pop(key, None)
        raise
    return future


def _send_and_drop_orphan(client: Any, goal: Any, feedback_callback: Any, goal_uuid: Any) -> Any:
    futures = getattr(client, "_futures", None)
    before = {id(f) for f in futures} if isinstance(futures, list) else None
    future = client.send_goal_async(goal, feedback_callback=feedback_callback, goal_uuid=goal_uuid)
    if before is None:
        return future
    lock = getattr(client, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        for orphan in orphaned_futures(client):
            if id(orphan) not in before and orphan is not future:
                with contextlib.suppress(ValueError):
                    client.remove_future(orphan)
    return future
