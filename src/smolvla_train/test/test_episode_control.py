"""EndRequests: how ~/end_episode, the time limit and a cancel end the recorder's episode (plain Python).

Regression (record-sim: "~/end_episode did not answer within 120 s"): an end request that arrived while the
episode was already ending at its time limit was never answered.
"""

from __future__ import annotations

import threading

from smolvla_train.recording.episode_control import EndRequests


def test_end_episode_during_time_limit_end_is_answered_not_left_waiting() -> None:
    ctl = EndRequests()
    assert ctl.begin()
    # the episode loop sees its time limit and stops: no end request yet -> outcome unknown
    assert ctl.close() is None
    # ~/end_episode arrives while the bag is being finished (the service thread waits)
    waiter = ctl.request("success")
    assert waiter is not None and not waiter.applied
    answered = threading.Event()
    threading.Thread(target=lambda: waiter.wait() and answered.set(), daemon=True).start()
    saved = {"bag_path": "/bags/episode_000000", "outcome": "unknown"}
    ctl.finish(saved)
    assert answered.wait(30.0), "the end request was left waiting"
    assert waiter.result is saved
    # afterwards: no episode
    assert ctl.request("failure") is None and not ctl.busy


def test_end_episode_before_the_loop_stops_decides_the_outcome() -> None:
    ctl = EndRequests()
    assert ctl.begin() and not ctl.begin()  # one episode at a time
    first = ctl.request("failure")
    second = ctl.request("success")  # a second request does not change the outcome
    assert first is not None and first.applied and second is not None and not second.applied
    assert ctl.requested() == "failure"
    assert ctl.close() == "failure"
    ctl.finish("result")
    assert first.wait(0) and second.wait(0) and first.result == second.result == "result"


def test_end_episode_of_a_discarded_episode_gets_no_result() -> None:
    ctl = EndRequests()
    assert ctl.begin()
    waiter = ctl.request("success")
    ctl.finish(None)  # discarded / not saved
    assert waiter is not None and waiter.wait(0) and waiter.result is None
    assert ctl.begin()  # the next episode can start


def test_no_episode_no_waiter() -> None:
    assert EndRequests().request("success") is None
