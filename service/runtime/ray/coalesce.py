"""Calls to a model's replicas sent together: what an ingress replica does with many small calls.

On Ray every call from an ingress replica to a model replica costs milliseconds of CPU on both
sides (pickling, Serve's routing, the replica's request wrapper), whatever it carries: a live
stream's one-frame step costs as much in calls as a 10-frame window. A :class:`Coalescer` keeps at
most ``most_in_flight`` calls of one model on their way; the calls that arrive meanwhile wait and
go together in the next one (at most ``most_items`` each), where the replica runs them at once, so
its own micro-batcher reads them in one model call. Nothing waits on a timer: a lone call goes at
once, and calls are held only while the replicas are busy with earlier ones (the items a replica
could not take before anyway). ``FRAMECAST_RAY_COALESCE_ITEMS`` and
``FRAMECAST_RAY_CALLS_IN_FLIGHT`` (``service/configs/ray.py``) are the bounds; docs/ray.md has
what it saves.

Each item keeps its own answer or its own error (:class:`Failed`), in order; a call that fails
as a whole (a replica died) fails each of its items with that error. A caller that stops waiting
(its client went away) leaves its item to run: a stream's step that nobody commits changes
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Failed:
    """One item's error in a sent-together call's answers (raised again at the ingress)."""

    error: BaseException


class Coalescer:
    """Items of one kind of call to one model, sent ``send(items) -> answers`` together (see the
    module's docstring)."""

    def __init__(
        self,
        send: Callable[[list[Any]], Awaitable[list[Any]]],
        most_items: int,
        most_in_flight: int,
    ):
        if most_items < 1 or most_in_flight < 1:
            raise ValueError("most_items and most_in_flight are at least 1")
        self._send = send
        self.most_items, self.most_in_flight = most_items, most_in_flight
        self._waiting: list[tuple[Any, asyncio.Future]] = []
        self.in_flight = 0
        self.calls = 0  # replica calls made (what /metrics and the tests read)
        self.items = 0  # items sent in them
        self._tasks: set[asyncio.Task] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def call(self, item: Any) -> Any:
        """The answer to ``item``, sent alone or with others; its own error raised here."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._kick()
        got = await future
        if isinstance(got, Failed):
            raise got.error
        return got

    def _kick(self) -> None:
        while self._waiting and self.in_flight < self.most_in_flight:
            batch = self._waiting[: self.most_items]
            del self._waiting[: self.most_items]
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._go(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _go(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.calls += 1
        self.items += len(batch)
        try:
            answers = await self._send([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} calls sent together")
        except BaseException as e:  # noqa: BLE001 - every waiting item gets the call's error
            answers = [Failed(e)] * len(batch)
        finally:
            self.in_flight -= 1
        for (_, future), answer in zip(batch, answers):
            if not future.done():  # its caller may have stopped waiting
                future.set_result(answer)
        self._kick()
