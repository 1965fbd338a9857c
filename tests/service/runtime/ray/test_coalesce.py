"""Calls sent together to a model's replicas (service/runtime/ray/coalesce.py): a lone call goes
at once, calls that arrive while the replicas are busy go together, each caller gets its own
answer or error, in order. No Ray needed: the replica is a stand-in that answers when told."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from service.errors import InvalidInput
from service.runtime.ray import ingress
from service.runtime.ray.coalesce import Coalescer, Failed


class Replica:
    """Answers each sent list when the test releases it: item x -> x * 10, or Failed for a
    negative item; ``fail`` makes the whole call raise."""

    def __init__(self):
        self.sent: list[list] = []
        self.gates: list[asyncio.Event] = []
        self.fail: Exception | None = None

    async def send(self, items: list) -> list:
        self.sent.append(list(items))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail is not None:
            raise self.fail
        return [Failed(InvalidInput(f"bad {x}")) if x < 0 else x * 10 for x in items]

    async def release(self, i: int) -> None:
        self.gates[i].set()
        for _ in range(5):  # let the answers and the next call through
            await asyncio.sleep(0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lone_call_goes_at_once_and_gets_its_answer():
    async def main():
        r = Replica()
        c = Coalescer(r.send, most_items=32, most_in_flight=2)
        task = asyncio.ensure_future(c.call(3))
        await _settle()
        assert r.sent == [[3]]  # sent before anything else came: no timer
        await r.release(0)
        assert await task == 30
        assert (c.calls, c.items, c.in_flight) == (1, 1, 0)

    asyncio.run(main())


def test_calls_that_arrive_while_the_replicas_are_busy_go_together_in_order():
    async def main():
        r = Replica()
        c = Coalescer(r.send, most_items=4, most_in_flight=2)
        tasks = [asyncio.ensure_future(c.call(x)) for x in range(12)]
        await _settle()
        # two calls on their way (the first two items, each alone); the others wait
        assert r.sent == [[0], [1]] and c.waiting == 10
        await r.release(0)  # a slot frees: the next four go together
        assert r.sent[2] == [2, 3, 4, 5] and c.waiting == 6
        await r.release(1)
        assert r.sent[3] == [6, 7, 8, 9] and c.waiting == 2
        await r.release(2)
        assert r.sent[4] == [10, 11] and c.waiting == 0
        for i in range(3, 5):
            await r.release(i)
        assert [await t for t in tasks] == [x * 10 for x in range(12)]
        assert (c.calls, c.items, c.in_flight) == (5, 12, 0)

    asyncio.run(main())


def test_one_items_error_is_raised_to_its_caller_only():
    async def main():
        r = Replica()
        c = Coalescer(r.send, most_items=8, most_in_flight=1)
        first = asyncio.ensure_future(c.call(1))
        await _settle()
        rest = [asyncio.ensure_future(c.call(x)) for x in (2, -1, 4)]
        await _settle()
        await r.release(0)
        await r.release(1)
        assert r.sent == [[1], [2, -1, 4]]
        assert await first == 10
        got = await asyncio.gather(*rest, return_exceptions=True)
        assert got[0] == 20 and got[2] == 40
        assert isinstance(got[1], InvalidInput) and "bad -1" in got[1].message

    asyncio.run(main())


def test_a_call_that_fails_as_a_whole_fails_its_items_and_the_next_still_goes():
    async def main():
        r = Replica()
        c = Coalescer(r.send, most_items=8, most_in_flight=1)
        a = asyncio.ensure_future(c.call(1))
        await _settle()
        b = [asyncio.ensure_future(c.call(x)) for x in (2, 3)]
        await _settle()
        r.fail = RuntimeError("replica died")
        await r.release(0)  # the first call fails; the two waiting go next
        r.fail = None
        await r.release(1)
        with pytest.raises(RuntimeError, match="replica died"):
            await a
        assert [await t for t in b] == [20, 30]
        assert c.in_flight == 0

    asyncio.run(main())


def test_a_caller_that_stops_waiting_leaves_the_others_their_answers():
    async def main():
        r = Replica()
        c = Coalescer(r.send, most_items=8, most_in_flight=1)
        a = asyncio.ensure_future(c.call(1))
        await _settle()
        b, gone = asyncio.ensure_future(c.call(2)), asyncio.ensure_future(c.call(3))
        await _settle()
        gone.cancel()  # its client went away
        await r.release(0)
        await r.release(1)
        assert (await a, await b) == (10, 20)
        assert gone.cancelled() and r.sent[1] == [2, 3]

    asyncio.run(main())


def test_the_bounds_are_at_least_one():
    with pytest.raises(ValueError):
        Coalescer(Replica().send, most_items=0, most_in_flight=1)
    with pytest.raises(ValueError):
        Coalescer(Replica().send, most_items=1, most_in_flight=0)


class Handle:
    """A deployment handle's stand-in: ``feed.remote`` (one call alone) and ``calls.remote``
    (several sent together), each answered after ``delay`` seconds."""

    def __init__(self, delay: float = 0.01):
        self.log: list[tuple[str, int]] = []
        self.delay = delay

        async def one(frames, steps, states):
            await asyncio.sleep(self.delay)
            return ("fed", float(frames.sum()), steps, states)

        async def many(kind, items):
            self.log.append((kind, len(items)))
            await asyncio.sleep(self.delay)
            return [("fed", float(f.sum()), s, st) for f, s, st in items]

        def alone(*args):
            self.log.append(("feed", 1))
            return one(*args)

        self.feed = SimpleNamespace(remote=alone)
        self.calls = SimpleNamespace(remote=many)


def test_a_remote_runners_stream_steps_go_together_and_come_back_to_their_streams(runtime):
    local = runtime.runners["convlstm2d_classify"]
    info = {
        "manifest": dict(local.manifest.__dict__),
        "placement": dict(local.placement.__dict__),
        "card": None,
        "warmup_ms": 1.0,
        "folder": str(local.folder),
        "most_replicas": 1,  # two calls in flight by default
    }

    async def main():
        h = Handle()
        r = ingress.RemoteRunner(h, info, coalesce_items=32)
        frames = [np.full((1, 4, 4, 1), k, np.float32) for k in range(20)]
        got = await asyncio.gather(*(r.feed(f, 1, [f"state{k}"]) for k, f in enumerate(frames)))
        for k, answer in enumerate(got):  # each stream its own step back
            assert answer == ("fed", 16.0 * k, 1, [f"state{k}"])
        assert sum(n for _, n in h.log) == 20
        assert len(h.log) < 20 and max(n for _, n in h.log) > 1  # sent together
        assert h.log[:2] == [("feed", 1), ("feed", 1)]  # the first two went at once, alone

        h2 = Handle()
        alone = ingress.RemoteRunner(h2, info, coalesce_items=1)  # FRAMECAST_RAY_COALESCE_ITEMS=1
        await asyncio.gather(*(alone.feed(f, 1, None) for f in frames[:6]))
        assert h2.log == [("feed", 1)] * 6

    asyncio.run(main())
