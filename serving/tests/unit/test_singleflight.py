"""SingleFlight: concurrent callers of one key share one blocking call, in a worker thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cryptopred_serving.singleflight import SingleFlight


class Gate:
    """A blocking call that counts its runs and waits until released."""

    def __init__(self, result: object = "answer", error: Exception | None = None) -> None:
        self.calls = 0
        self.threads: list[str] = []
        self.release = threading.Event()
        self.result, self.error = result, error

    def __call__(self) -> object:
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        assert self.release.wait(5)
        if self.error is not None:
            raise self.error
        return self.result


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_concurrent_callers_of_one_key_share_one_call_off_the_loop() -> None:
    async def main() -> list[object]:
        flights: SingleFlight[str, object] = SingleFlight()
        gate = Gate()
        waiters = [asyncio.ensure_future(flights.run("k", gate)) for _ in range(20)]
        await _settle()
        assert flights.running("k")
        gate.release.set()
        results = await asyncio.gather(*waiters)
        assert gate.calls == 1
        assert gate.threads[0] != threading.current_thread().name
        assert not flights.running("k")
        return results

    assert asyncio.run(main()) == ["answer"] * 20


def test_each_key_gets_its_own_call_and_a_finished_call_is_not_reused() -> None:
    async def main() -> None:
        flights: SingleFlight[str, object] = SingleFlight()
        a, b = Gate("a"), Gate("b")
        a.release.set()
        b.release.set()
        assert await asyncio.gather(flights.run("a", a), flights.run("b", b)) == ["a", "b"]
        assert await flights.run("a", a) == "a"  # no caching: the next miss reads again
        assert (a.calls, b.calls) == (2, 1)

    asyncio.run(main())


def test_an_error_reaches_every_waiter_and_frees_the_key() -> None:
    async def main() -> None:
        flights: SingleFlight[str, object] = SingleFlight()
        failing = Gate(error=LookupError("db down"))
        waiters = [asyncio.ensure_future(flights.run("k", failing)) for _ in range(3)]
        await _settle()
        failing.release.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert [type(r) for r in results] == [LookupError] * 3
        assert failing.calls == 1
        working = Gate("back")
        working.release.set()
        assert await flights.run("k", working) == "back"

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_the_call_others_wait_for() -> None:
    async def main() -> None:
        flights: SingleFlight[str, object] = SingleFlight()
        gate = Gate()
        first = asyncio.ensure_future(flights.run("k", gate))
        await _settle()
        second = asyncio.ensure_future(flights.run("k", gate))
        await _settle()
        first.cancel()
        await _settle()
        gate.release.set()
        assert await second == "answer"
        assert gate.calls == 1
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(main())
