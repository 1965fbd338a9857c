"""What the micro-batcher queues: requests (:class:`Item`, with its :class:`Timing`) and work
for its thread (:class:`Job`), how answers go back to the callers' event loops, the
:class:`Ticket` of a request being decoded and the padded batch sizes (:func:`bucket_sizes`)."""

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

    __slots__ = (
        "payload",
        "future",
        "loop",
        "timing",
        "enqueued",
        "deadline",
        "gone",
        "answered",
        "background",
    )

    def __init__(
        self,
        payload: Any,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
        background: bool = False,
    ):
        self.payload = payload
        self.background = background  # an evaluation job's clip: served after online requests
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


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes served: 1, 2, 4, 8, then 1.5x and 2x steps (12, 16, 24, 32, 48,
    64, 96, ...) below ``max_batch_size``, and ``max_batch_size`` itself.

    Padding wastes compute: under load a batch of 23 clips padded to 32 runs at 72 % efficiency,
    padded to 24 at 96 %. The 1.5x steps keep the waste under a third for any batch of 9 or more,
    at the cost of a few more shapes to warm at load (8 instead of 6 up to 32).
    """
    sizes, b = [1, 2, 4, 8], 8
    while b < max_batch_size:
        b = b * 3 // 2 if b & (b - 1) == 0 else b * 4 // 3  # 8 → 12 → 16 → 24 → 32 → 48 → ...
        sizes.append(b)
    return tuple([s for s in sizes if s < max_batch_size] + [max_batch_size])


class Ticket:
    """A request on its way to a batcher (its upload is being read and decoded).

    ``release`` is idempotent; :meth:`Batcher.run` releases the ticket it is given as it
    enqueues.
    """

    __slots__ = ("batcher", "live")

    def __init__(self, batcher: Any):  # a service.runtime.batcher.Batcher
        self.batcher, self.live = batcher, True

    def release(self) -> None:
        with self.batcher._cv:
            self._release_locked()

    def _release_locked(self) -> None:
        if self.live:
            self.live = False
            self.batcher._incoming -= 1
            self.batcher._cv.notify_all()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
