"""An Acknowledgement behaves as a concurrent.futures.Future whether it is settled before
anyone looks at it or after, and when looking and settling race."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Future,
    InvalidStateError,
    as_completed,
    wait,
)

import pytest

from xbus.producers.acknowledgement import Acknowledgement


def test_it_has_what_a_future_has_but_its_lock_until_needed() -> None:
    assert set(vars(Future())) - set(vars(Acknowledgement())) == {"_condition"}


def test_settled_before_anyone_looks() -> None:
    future: Acknowledgement[str] = Acknowledgement()
    future.set_result("done")
    called: list[str] = []
    future.add_done_callback(lambda f: called.append(f.result()))
    assert future.done() and not future.cancelled() and future.exception() is None
    assert future.result(timeout=0) == "done" and called == ["done"]
    assert not future.cancel()
    assert "finished returned str" in repr(future)
    with pytest.raises(InvalidStateError):
        future.set_result("again")


def test_settled_while_someone_waits() -> None:
    future: Acknowledgement[int] = Acknowledgement()
    called: list[int] = []
    future.add_done_callback(lambda f: called.append(f.result()))
    waiting = threading.Thread(target=lambda: called.append(future.result(timeout=10)))
    waiting.start()
    threading.Timer(0.05, future.set_result, (7,)).start()
    waiting.join(timeout=10)
    assert sorted(called) == [7, 7]


def test_a_failure_and_a_cancellation() -> None:
    failed: Acknowledgement[int] = Acknowledgement()
    failed.set_exception(ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        failed.result()
    cancelled: Acknowledgement[int] = Acknowledgement()
    assert cancelled.cancel()
    with pytest.raises(CancelledError):
        cancelled.result()
    with pytest.raises(InvalidStateError):  # as a Future: the late acknowledgement is refused
        cancelled.set_result(1)


def test_wait_as_completed_and_asyncio_take_it() -> None:
    early: Acknowledgement[int] = Acknowledgement()
    late: Acknowledgement[int] = Acknowledgement()
    early.set_result(1)
    done, _ = wait([early, late], return_when=FIRST_COMPLETED, timeout=5)
    assert done == {early}
    threading.Timer(0.05, late.set_result, (2,)).start()
    assert sorted(f.result() for f in as_completed([early, late], timeout=5)) == [1, 2]

    async def awaited() -> int:
        pending: Acknowledgement[int] = Acknowledgement()
        asyncio.get_running_loop().call_later(0.01, pending.set_result, 3)
        return await asyncio.wrap_future(pending)

    assert asyncio.run(awaited()) == 3


def test_looking_and_settling_at_the_same_time() -> None:
    futures: list[Acknowledgement[int]] = [Acknowledgement() for _ in range(3000)]
    called = [0] * len(futures)
    results: list[int | None] = [None] * len(futures)

    def look(i: int) -> None:
        called[i] += 1

    def settle() -> None:
        for i, future in enumerate(futures):
            future.set_result(i)

    def observe() -> None:
        order = list(range(len(futures)))
        random.Random(4).shuffle(order)
        for i in order:
            futures[i].add_done_callback(lambda _, i=i: look(i))
            results[i] = futures[i].result(timeout=10)

    threads = [threading.Thread(target=settle), threading.Thread(target=observe)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == list(range(len(futures)))
    assert called == [1] * len(futures)
