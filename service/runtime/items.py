"""What the micro-batcher queues: requests (:class:`Item`, with its :class:`Timing`) and work
for its thread (:class:`Job`), and how answers go back to the callers' event loops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


@dataclass
class Timing:
    """Where one request's time went on the model side (all in milliseconds)."""

    queued_ms: float = 0.0  # submitted → admitted into a batch by the worker
    inference_ms: float = 0.0  # inside the model calls this request took part in
    calls: int = 0  # model calls (rollout steps) it took part in
    batch: int = 0  # items in the first call it shared (before padding)
    bucket: int = 0  # the padded (compiled) batch size of that call


class Item:
    """One request in the batcher: its owner's ``payload`` and how it is answered.

    The answer goes to an asyncio future of the caller's event loop. The worker never touches
    that future from its thread: it hands every answer of one step to each loop in one
    ``call_soon_threadsafe`` (:func:`answer`: one wake-up per batch, not one per request)."""

    __slots__ = ("payload", "future", "loop", "timing", "enqueued", "deadline", "gone", "answered")

    def __init__(self, payload: Any, deadline: float | None, loop: asyncio.AbstractEventLoop):
        self.payload = payload
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.timing = Timing()
        self.enqueued = time.perf_counter()
        self.deadline = deadline  # time.monotonic() by which it must be answered, or None
        self.gone = False  # its caller stopped waiting: drop it, compute nothing more for it
        self.answered = False  # the worker has handed its answer (or error) to its loop

    def expired(self, now: float) -> bool:
        return self.gone or (self.deadline is not None and now >= self.deadline)


def settle(answers: list[tuple[Item, Any, BaseException | None]]) -> None:
    """On the caller's loop: give each waiting future its result or error."""
    for item, result, error in answers:
        fut = item.future
        if fut.done():  # its caller stopped waiting (cancelled, timed out)
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)


def answer(answers: list[tuple[Item, Any, BaseException | None]]) -> None:
    """Hand ``answers`` to their loops: one call per loop (a closed loop's callers are gone)."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for a in answers:
        a[0].answered = True
        by_loop.setdefault(a[0].loop, []).append(a)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(settle, group)
        except RuntimeError:  # the loop was closed: nobody waits for these any more
            pass


class Job:
    """Arbitrary work for the worker thread, run between batches (:meth:`Batcher.submit`)."""

    __slots__ = ("fn", "args", "future", "enqueued")

    def __init__(self, fn: Callable, args: tuple):
        self.fn, self.args = fn, args
        self.future: Future[Any] = Future()
        self.enqueued = time.perf_counter()
