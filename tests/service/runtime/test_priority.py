"""Two priority levels in the batcher: an evaluation job's items (``background``) wait for online
work, in this model's batcher and in every other of the process, and never share a call with it.

The batchers here run a recording step function (no model): each payload is a dict with the steps
it still needs, and every call is logged with the payloads it held. No test sleeps to pass: the
worker is held by a job waiting on an Event while items are queued, and results are awaited with
deadlines.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.runtime.batcher import Batcher
from service.runtime.priority import Yielding, quiet_in

DEADLINE_S = 10.0


class Recorder:
    """A step function: each payload ``{"name", "steps"}`` takes ``steps`` calls; every call is
    logged as the list of names it held. ``on_call(n, names)`` runs inside call ``n``."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.on_call = None

    def __call__(self, items, bucket):
        names = [it.payload["name"] for it in items]
        self.calls.append(names)
        if self.on_call is not None:
            self.on_call(len(self.calls), names)
        out = []
        for it in items:
            it.payload["steps"] -= 1
            out.append(it.payload["name"] if it.payload["steps"] <= 0 else None)
        return out


def make(rec: Recorder, *, max_batch: int = 1, quiet_s: float = 0.0, **kw) -> Batcher:
    return Batcher(
        kw.pop("name", "m"),
        rec,
        max_queue=kw.pop("max_queue", 16),
        timeout_s=DEADLINE_S,
        max_batch_size=kw.pop("max_batch_size", 8),
        yielding=Yielding(max_batch, quiet_s),
    )


def hold(batcher: Batcher) -> threading.Event:
    """Hold the worker (a job waiting on the returned Event) until the Event is set."""
    release, started = threading.Event(), threading.Event()
    batcher.submit(lambda: (started.set(), release.wait(DEADLINE_S)))
    assert started.wait(DEADLINE_S)
    return release


def item(name: str, steps: int = 1) -> dict:
    return {"name": name, "steps": steps}


def test_online_items_queued_after_background_ones_are_served_first():
    rec = Recorder()
    b = make(rec, max_batch=2)

    async def main():
        release = hold(b)
        bg = [asyncio.create_task(b.run(item(f"bg{i}"), background=True)) for i in range(3)]
        await asyncio.sleep(0)  # every task enqueues (enqueueing is synchronous)
        online = [asyncio.create_task(b.run(item(f"on{i}"))) for i in range(2)]
        await asyncio.sleep(0)
        release.set()
        async with asyncio.timeout(DEADLINE_S):
            return await asyncio.gather(*online), await asyncio.gather(*bg)

    try:
        online, bg = asyncio.run(main())
    finally:
        b.close()
    assert [r for r, _ in online] == ["on0", "on1"]
    assert [r for r, _ in bg] == ["bg0", "bg1", "bg2"]
    assert rec.calls[0] == ["on0", "on1"]  # the online items went first, together
    assert rec.calls[1:] == [["bg0", "bg1"], ["bg2"]]  # then the job's, two a call at most
    assert b.idle and b.depth == 0


def test_an_online_request_parks_a_background_rollout_and_never_shares_its_calls():
    """A job's clip mid-rollout (5 steps) steps aside when an online request arrives; it comes
    back, at the step it had reached, when the online work is done."""
    rec = Recorder()
    b = make(rec)
    loop_box = {}
    arrived = threading.Event()

    def on_call(n, names):
        if n == 2:  # during the job's second step, an online request arrives
            loop = loop_box["loop"]
            loop.call_soon_threadsafe(
                lambda: loop_box.__setitem__("t", loop.create_task(b.run(item("online", steps=2))))
            )
            # wait until it is queued, so the worker sees it before its next step
            assert arrived.wait(DEADLINE_S)

    rec.on_call = on_call
    real_enqueue = b._enqueue

    def enqueue(entry, ticket=None):
        real_enqueue(entry, ticket)
        if not getattr(entry, "background", True):
            arrived.set()

    b._enqueue = enqueue

    async def main():
        loop_box["loop"] = asyncio.get_running_loop()
        async with asyncio.timeout(DEADLINE_S):
            result, timing = await b.run(item("job", steps=5), background=True)
            online = await loop_box["t"]
        return result, timing, online

    try:
        result, timing, online = asyncio.run(main())
    finally:
        b.close()
    assert result == "job" and online[0] == "online"
    assert rec.calls == [["job"], ["job"], ["online"], ["online"], ["job"], ["job"], ["job"]]
    # the parked rollout went on where it stood: five steps in all, none repeated
    assert sum(names.count("job") for names in rec.calls) == 5
    assert timing.queued_ms >= 0


def test_background_work_waits_for_online_work_in_every_batcher_of_the_process():
    """A request being decoded for model B (its ticket out) keeps model A's job items waiting."""
    rec_a, rec_b = Recorder(), Recorder()
    a, b = make(rec_a, name="a"), make(rec_b, name="b")

    async def main():
        ticket = b.expect()  # an online request to B is being decoded
        job = asyncio.create_task(a.run(item("job"), background=True))
        with pytest.raises(TimeoutError):  # it must not run while B's request is on its way
            async with asyncio.timeout(0.2):
                await asyncio.shield(job)
        assert rec_a.calls == []
        ticket.release()
        async with asyncio.timeout(DEADLINE_S):
            return await job

    try:
        result, _ = asyncio.run(main())
    finally:
        a.close()
        b.close()
    assert result == "job" and rec_a.calls == [["job"]]


def test_quiet_in_counts_the_quiet_period_from_the_last_online_answer():
    rec = Recorder()
    b = make(rec, quiet_s=60.0)
    try:
        asyncio.run(b.run(item("online")))
        assert 0 < quiet_in(60.0) <= 60.0  # answered just now: a minute of quiet still to come
        assert quiet_in(0.0) == 0.0
    finally:
        b.close()


def test_background_items_do_not_take_the_online_queue_and_leave_when_cancelled():
    rec = Recorder()
    b = make(rec, max_queue=2)

    async def main():
        release = hold(b)  # the holding job takes one of the two online places
        jobs = [asyncio.create_task(b.run(item(f"bg{i}"), background=True)) for i in range(5)]
        await asyncio.sleep(0)
        assert not b.idle and b.depth == 1  # the job's items are not counted against it
        b.expect().release()  # an online request still finds its place
        jobs[0].cancel()
        await asyncio.gather(jobs[0], return_exceptions=True)
        for t in jobs[1:]:
            t.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        release.set()
        async with asyncio.timeout(DEADLINE_S):  # the online queue still takes a request
            return await b.run(item("online"))

    try:
        result, _ = asyncio.run(main())
    finally:
        b.close()
    assert result == "online"
    assert rec.calls == [["online"]]  # no cancelled job item was ever computed
    assert b.idle and b.depth == 0


def test_closing_fails_waiting_background_items():
    rec = Recorder()
    b = make(rec)

    async def main():
        release = hold(b)
        job = asyncio.create_task(b.run(item("job"), background=True))
        await asyncio.sleep(0)
        b.close()
        release.set()
        async with asyncio.timeout(DEADLINE_S):
            return await asyncio.gather(job, return_exceptions=True)

    (err,) = asyncio.run(main())
    assert "shutting down" in str(err)
