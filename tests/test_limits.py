"""AdaptiveLimiter: a cancelled waiter never raises, never leaks a slot and never loses one,
in every order of its cancellation and the release that would have woken it."""

from __future__ import annotations

import asyncio

import pytest

from mtmcs.engine.limits import AdaptiveLimiter


async def full(limit: int) -> AdaptiveLimiter:
    limiter = AdaptiveLimiter(limit)
    for _ in range(limit):
        await limiter.acquire()
    return limiter


async def settle(task: asyncio.Task[None]) -> None:
    with pytest.raises(asyncio.CancelledError):
        await task


async def free_slots(limiter: AdaptiveLimiter) -> int:
    """How many acquires succeed at once (given back afterwards)."""
    count = 0
    while count < limiter.maximum + 1:
        try:
            await asyncio.wait_for(limiter.acquire(), 0.05)
        except TimeoutError:
            break
        count += 1
    for _ in range(count):
        limiter.release()
    return count


def test_waiter_cancelled_then_released_before_it_runs() -> None:
    """The run is cancelled (a failure elsewhere) and a finishing call releases its slot
    before the cancelled waiter runs: this raised `<Future cancelled> is not in deque`."""

    async def scenario() -> None:
        limiter = await full(1)
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        limiter.release()
        await settle(waiter)
        assert limiter._in_use == 0 and not limiter._waiters
        assert await free_slots(limiter) == 1

    asyncio.run(scenario())


def test_waiter_handed_a_slot_then_cancelled_gives_it_back() -> None:
    async def scenario() -> None:
        limiter = await full(1)
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release()  # hands the slot to the waiter
        waiter.cancel()
        await settle(waiter)
        assert limiter._in_use == 0 and not limiter._waiters
        assert await free_slots(limiter) == 1

    asyncio.run(scenario())


def test_waiter_cancelled_and_settled_then_released() -> None:
    async def scenario() -> None:
        limiter = await full(2)
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await settle(waiter)
        assert not limiter._waiters
        limiter.release()
        limiter.release()
        assert limiter._in_use == 0
        assert await free_slots(limiter) == 2

    asyncio.run(scenario())


def test_slot_passes_over_a_cancelled_waiter_to_the_next() -> None:
    async def scenario() -> None:
        limiter = await full(1)
        first = asyncio.create_task(limiter.acquire())
        second = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        first.cancel()
        limiter.release()
        await settle(first)
        await asyncio.wait_for(second, 1.0)  # got the slot
        assert limiter._in_use == 1 and not limiter._waiters
        limiter.release()
        assert await free_slots(limiter) == 1

    asyncio.run(scenario())


def test_cancelling_every_waiter_of_a_cancelled_run_loses_nothing() -> None:
    """Many waiters, all cancelled at once as a run is, while the holders release."""

    async def scenario() -> None:
        limiter = await full(3)
        waiters = [asyncio.create_task(limiter.acquire()) for _ in range(10)]
        await asyncio.sleep(0)
        for index, waiter in enumerate(waiters):
            waiter.cancel()
            if index < 3:
                limiter.release()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results
        assert limiter._in_use == 0 and not limiter._waiters
        assert await free_slots(limiter) == 3

    asyncio.run(scenario())
