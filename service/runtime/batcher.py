"""A generic micro-batcher: one worker thread, a bounded queue, buckets, deadlines, cancellation.

It knows nothing of models, tasks or frames. Its owner gives it ``step(items, bucket)``, which
makes one batched call for the *active* items (at most ``max_batch_size``) and returns, for each
item, its result or ``None`` when the item needs more steps (a rollout). Items still going stay
in the active set and share the next call with items admitted meanwhile (continuous batching).

- The queue is bounded (``max_queue`` items queued or active): a full queue raises
  :class:`~service.errors.Overloaded` at once, at :meth:`Batcher.expect` (before the caller reads
  its upload) or at enqueue.
- With no active items the worker waits for the first one and then, while :class:`Ticket` s
  announce more on the way, up to ``max_batch_delay_ms`` for others to fill the batch; with no
  ticket out it never waits, so one caller alone pays no delay.
- An item past its deadline, or whose caller stopped waiting, leaves before its next step and is
  never computed again.
- :meth:`Batcher.submit` runs arbitrary work on the worker between batches (warm-up; tests use it
  to hold the worker). Every call into the step function happens on the one worker thread.
- ``run(..., background=True)`` is an evaluation job's clip: a lower priority, served only when
  the process has no online work (``service/runtime/priority.py``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from service.errors import DeadlineExceeded, InferenceError, NotReady, Overloaded
from service.http.limits import current_deadline, remaining
from service.runtime.items import Item, Job, Ticket, Timing, answer, bucket_sizes
from service.runtime.priority import POLL_S, BackgroundQueue, Yielding, quiet_in, register

log = logging.getLogger("framecast.batcher")


_STOP = object()
Step = Callable[[list[Item], int], list[Any]]


class Batcher:
    """The queue and worker thread of one model (``name`` is used in messages and metrics).

    ``step(items, bucket)`` → one result (or ``None``: more steps) per item; it may raise, which
    fails exactly the items of that call. ``on_queue(depth)`` is told every change of the depth.
    """

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        max_queue: int,
        timeout_s: float,
        max_batch_size: int = 1,
        max_batch_delay_ms: float = 0.0,
        on_queue: Callable[[int], None] | None = None,
        yielding: Yielding | None = None,
    ):
        self.name = name
        self.step_fn = step
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_ms / 1000.0
        self.buckets = bucket_sizes(max_batch_size)
        self.on_queue = on_queue or (lambda depth: None)
        self._cv = threading.Condition()
        self._queue: deque[Job | Item] = deque()
        self._pending = 0  # queued + active: what max_queue bounds
        self._incoming = 0  # live tickets
        self._last_online = 0.0  # perf_counter() when an online item was last queued or finished
        self._background = BackgroundQueue(yielding or Yielding())  # evaluation jobs' items
        self._closed = False
        register(self)
        self._thread = threading.Thread(target=self._loop, name=f"framecast-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._pending

    @property
    def idle(self) -> bool:
        """Nothing queued, running or being decoded for this model (evaluation jobs' too)."""
        return self._pending == 0 and self._incoming == 0 and self._background.pending == 0

    def bucket_for(self, n: int) -> int:
        """The smallest bucket that holds ``n`` items (``n`` <= ``max_batch_size``)."""
        for b in self.buckets:
            if b >= n:
                return b
        raise ValueError(f"{n} items exceed the largest bucket {self.buckets[-1]}")

    def _what(self) -> str:
        return f"model {self.name!r}"

    # -- worker side ------------------------------------------------------------------------
    def _loop(self) -> None:
        active: list[Item] = []
        while True:
            job, admitted = self._next_work(active)
            if job is _STOP:
                self._fail_all(active)
                return
            if job is not None:
                self._run_job(job)
                continue
            active.extend(admitted)
            if not active:
                continue
            if not all(it.background for it in active) and any(it.background for it in active):
                parked = [it for it in active if it.background]  # online work first
                active = [it for it in active if not it.background]
                with self._cv:
                    self._background.park(parked)
            try:
                active = self._step(active)
            except Exception as e:  # noqa: BLE001 - a bug here must not kill the worker
                log.exception("%s: batch step failed", self._what())
                err = InferenceError(f"{self._what()}: {type(e).__name__}: {e}")
                # an answered item was counted out already (_finish counts before answering)
                self._finish([item for item in active if not item.answered], err)
                active = []

    def _next_work(self, active: list[Item]) -> tuple[Any, list[Item]]:
        """Under the lock: a job to run (only between batches), or the items to admit."""
        with self._cv:
            if not active:
                while not self._queue and not self._closed:
                    if not self._background:
                        self._cv.wait()
                        continue
                    wait = quiet_in(self._background.yielding.quiet_s)
                    if wait <= 0:
                        break
                    self._cv.wait(min(wait, POLL_S))  # other batchers' online work: poll
            if self._closed:
                return _STOP, []
            if not active and self._queue and isinstance(self._queue[0], Job):
                return self._queue.popleft(), []
            room = self.max_batch_size - len(active)
            admitted = self._admit_locked(room)
            if not admitted and not self._queue and self._background:
                return None, self._admit_background_locked(active, room)
            if not active and admitted and self.max_batch_delay_s > 0:
                deadline = admitted[0].enqueued + self.max_batch_delay_s
                while len(admitted) < room and self._incoming > 0 and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0 or (self._queue and isinstance(self._queue[0], Job)):
                        break
                    self._cv.wait(left)
                    admitted += self._admit_locked(room - len(admitted))
            return None, admitted

    def _admit_locked(self, room: int) -> list[Item]:
        out: list[Item] = []
        now = time.perf_counter()
        while room > 0 and self._queue:
            item = self._queue[0]
            if not isinstance(item, Item):  # a Job: run between batches
                break
            self._queue.popleft()
            if item.gone:  # its caller gave up
                self._finished_locked(item)
                continue
            if item.expired(time.monotonic()):  # past its deadline: never computed
                answer([(item, None, self._late())])
                self._finished_locked(item)
                continue
            item.timing.queued_ms = (now - item.enqueued) * 1000.0
            out.append(item)
            room -= 1
        return out

    def _admit_background_locked(self, active: list[Item], room: int) -> list[Item]:
        """Background items for this batch, when no online item is in it and the process has
        been quiet of online work long enough (``service/runtime/priority.py``)."""
        if any(not it.background for it in active):
            return []
        if quiet_in(self._background.yielding.quiet_s) > 0:
            return []
        out, dropped = self._background.take(room, len(active))
        self._background.pending -= dropped
        now = time.perf_counter()
        for item in out:
            if not item.timing.calls:
                item.timing.queued_ms = (now - item.enqueued) * 1000.0
        return out

    def _run_job(self, job: Job) -> None:
        # The queue count drops before the caller can see the answer, so a caller that got its
        # answer never observes its own request still counted.
        if job.future.set_running_or_notify_cancel():
            try:
                result, error = job.fn(*job.args), None
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                result, error = None, e
            with self._cv:
                self._finished_locked()
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
        else:
            with self._cv:
                self._finished_locked()

    def _late(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the request to {self._what()} ran past its deadline "
            "(FRAMECAST_REQUEST_TIMEOUT_S); its model work was dropped"
        )

    def _drop_expired(self, active: list[Item]) -> list[Item]:
        now = time.monotonic()
        gone = [r for r in active if r.expired(now)]
        if not gone:
            return active
        self._finish(gone, self._late())
        return [r for r in active if not r.expired(now)]

    def _finish(
        self,
        items: list[Item],
        error: BaseException | None = None,
        results: list[Any] | None = None,
    ) -> None:
        """Count ``items`` out of the queue, then answer them (the count drops first)."""
        with self._cv:
            for item in items:
                self._finished_locked(item)
        answer(
            [
                (item, None if error is not None or results is None else results[i], error)
                for i, item in enumerate(items)
                if not item.answered
            ]
        )

    def _step(self, active: list[Item]) -> list[Item]:
        """One call for every active item; returns those with steps left."""
        active = self._drop_expired(active)
        if not active:
            return []
        n = len(active)
        bucket = n
        try:
            bucket = self.bucket_for(n)
            results = list(self.step_fn(active, bucket))
            if len(results) != n:
                raise InferenceError(
                    f"{self._what()}: its step answered {len(results)} result(s) for {n} item(s)"
                )
        except Exception as e:  # noqa: BLE001 - fails this batch only
            log.error(
                "%s failed on a batch of %d item(s) (padded to %d): %s: %s",
                self._what(),
                n,
                bucket,
                type(e).__name__,
                e,
            )
            if not isinstance(e, InferenceError):
                e = InferenceError(
                    f"{self._what()} failed on a batch of {n} clip(s): {type(e).__name__}: {e}"
                )
            self._finish(active, e)
            return []
        done = [(item, r) for item, r in zip(active, results) if r is not None]
        if done:
            self._finish([d[0] for d in done], results=[d[1] for d in done])
        return [item for item, r in zip(active, results) if r is None]

    def _finished_locked(self, item: Item | None = None) -> None:
        if item is not None and item.background:
            self._background.pending -= 1
            return
        self._pending -= 1
        self._last_online = time.perf_counter()
        self.on_queue(self._pending)

    def _fail_all(self, active: list[Item]) -> None:
        err = NotReady(f"{self._what()} is shutting down")
        with self._cv:
            items = list(active) + list(self._queue) + list(self._background.items)
            self._queue.clear()
            self._background.items.clear()
        answer(
            [(item, None, err) for item in items if isinstance(item, Item) and not item.answered]
        )
        for job in items:
            if isinstance(job, Job) and job.future.set_running_or_notify_cancel():
                job.future.set_exception(err)

    # -- caller side ------------------------------------------------------------------------
    def _check_room_locked(self) -> None:
        if self._closed:
            raise NotReady(f"{self._what()} is shutting down")
        if self._pending >= self.max_queue:
            raise Overloaded(
                f"{self._what()} has {self._pending} requests queued "
                f"(FRAMECAST_MAX_QUEUE={self.max_queue}); retry shortly"
            )

    def expect(self) -> Ticket:
        """Announce a request whose upload is being decoded; 503 at once when the queue is full."""
        with self._cv:
            self._check_room_locked()
            self._incoming += 1
        return Ticket(self)

    def _enqueue(self, entry: Job | Item, ticket: Ticket | None = None) -> None:
        with self._cv:
            if ticket is not None:
                ticket._release_locked()
            if isinstance(entry, Item) and entry.background:
                if self._closed:
                    raise NotReady(f"{self._what()} is shutting down")
                self._background.add(entry)
                self._cv.notify_all()
                return
            self._check_room_locked()
            self._pending += 1
            self.on_queue(self._pending)
            self._queue.append(entry)
            self._cv.notify_all()

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Queue ``fn(*args)`` to run on the worker between batches; 503 when the queue is full."""
        job = Job(fn, args)
        self._enqueue(job)
        return job.future

    def _abandon(self, item: Item) -> None:
        with self._cv:
            item.gone = True  # if a batch has it, the worker drops it before its next step
            if item.background:
                if self._background.remove(item):
                    self._finished_locked(item)
                return  # in a batch (or finished) already: the worker accounts for it
            try:
                self._queue.remove(item)
            except ValueError:
                return  # admitted (or finished) already: the worker accounts for it
            self._finished_locked()

    async def run(
        self, payload: Any, ticket: Ticket | None = None, *, background: bool = False
    ) -> tuple[Any, Timing]:
        """Queue ``payload`` and await its result, within the request's deadline (if any) and
        ``timeout_s``; a caller that goes away takes its item out of the queue. ``background``:
        an evaluation job's item (no deadline: it waits for online work to pass)."""
        if background:
            return await self._run_background(payload)
        item = Item(payload, current_deadline(), asyncio.get_running_loop())
        left = remaining(item.deadline)
        if left is not None and left <= 0:
            if ticket is not None:
                ticket.release()
            raise self._late()  # never queued
        timeout = self.timeout_s if left is None else min(self.timeout_s, left)
        self._enqueue(item, ticket)
        try:
            async with asyncio.timeout(timeout):
                result = await item.future
        except TimeoutError:
            self._abandon(item)
            if left is not None and left <= self.timeout_s:
                raise self._late() from None
            raise Overloaded(
                f"{self._what()} did not answer within "
                f"FRAMECAST_INFERENCE_TIMEOUT_S={self.timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:  # the client went away
            self._abandon(item)
            raise
        return result, item.timing

    async def _run_background(self, payload: Any) -> tuple[Any, Timing]:
        item = Item(payload, None, asyncio.get_running_loop(), background=True)
        self._enqueue(item)
        try:
            result = await item.future
        except asyncio.CancelledError:  # the job was cancelled
            self._abandon(item)
            raise
        return result, item.timing

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
