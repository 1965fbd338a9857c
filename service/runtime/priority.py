"""Two priority levels in every model's batcher: online requests first, evaluation jobs after.

Triton's dynamic batcher has priority levels; framecast has two. An evaluation job's clips
(``background`` items) wait in a queue of their own beside the online queue, and a model's worker
takes them only when the whole process has been quiet of online work for ``quiet_s``: no online
request queued, in a batch, or being decoded (its :class:`~service.runtime.batcher.Ticket` out)
in any model's batcher (a job over model A would otherwise take the CPU from a request to model
B). Then at most ``max_batch`` of them share one call, so that an online request that arrives
meanwhile waits for one small call at most; and an online request that arrives while background
items are mid-rollout *parks* them (they leave the batch with their rollout state, which lives in
their payload, and come back when the online work is done), so online calls never carry
background rows.

The online path pays nothing for this: it never looks at this module; the worker checks the
other batchers' counters (plain attribute reads) only when it has background work waiting.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.runtime.items import Item

# the batchers of this process (service.runtime.batcher.Batcher, which imports this module),
# whose online work every background admission looks at
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
POLL_S = 0.002  # how often a worker with background work waiting looks at the others again


@dataclass(frozen=True)
class Yielding:
    """How background work yields: ``max_batch`` items in one call at most, and only after
    ``quiet_s`` seconds without online work in the process."""

    max_batch: int = 1
    quiet_s: float = 0.005


def register(batcher: Any) -> None:
    _LIVE.add(batcher)


def quiet_in(quiet_s: float, now: float | None = None) -> float:
    """Seconds until this process has had no online work for ``quiet_s`` (0: it has now; while
    online work is going on, at least ``POLL_S``: look again then)."""
    now = time.perf_counter() if now is None else now
    last = 0.0
    for b in list(_LIVE):
        if b._pending or b._incoming:  # online work queued, in a batch or being decoded
            return max(quiet_s, POLL_S)
        last = max(last, b._last_online)
    return max(0.0, last + quiet_s - now)


async def wait_quiet(quiet_s: float) -> None:
    """Return once this process has had no online work for ``quiet_s``: an evaluation job waits
    here before its own CPU work (decoding a clip, scoring it), so that it yields the CPU to
    online requests as its model calls do."""
    while (wait := quiet_in(quiet_s)) > 0:
        await asyncio.sleep(max(wait, POLL_S))


class BackgroundQueue:
    """A batcher's background items: waiting (new, or parked mid-rollout) and counted until
    answered (``pending``, apart from the online queue's bound)."""

    def __init__(self, yielding: Yielding):
        self.yielding = yielding
        self.items: deque[Item] = deque()
        self.pending = 0  # waiting + in a batch

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, item: Item) -> None:
        self.pending += 1
        self.items.append(item)

    def park(self, items: list[Item]) -> None:
        """Items taken out of a batch for online work: first in line again, in their order."""
        self.items.extendleft(reversed(items))

    def take(self, room: int, in_batch: int) -> tuple[list[Item], int]:
        """Up to ``room`` items (at most ``max_batch`` in the batch with the ``in_batch``
        already there), and how many gone items (their callers left) were dropped."""
        out: list[Item] = []
        dropped = 0
        room = min(room, self.yielding.max_batch - in_batch)
        while room > 0 and self.items:
            item = self.items.popleft()
            if item.gone:
                dropped += 1
                continue
            out.append(item)
            room -= 1
        return out, dropped

    def remove(self, item: Item) -> bool:
        try:
            self.items.remove(item)
        except ValueError:
            return False
        return True


__all__ = ["BackgroundQueue", "POLL_S", "Yielding", "quiet_in", "register", "wait_quiet"]
