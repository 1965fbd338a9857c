"""Running one evaluation job: every clip through every model by the one inference path, at the
lower priority, scored as predict and classify answer, then summed up.

Each clip is decoded (``DataSet.frames``), fitted to each model by :func:`service.inference.prepare`
(the truth by :func:`~service.inference.fit_frames`, as compare does), called by
:func:`service.inference.call` with ``background=True`` (an evaluation job's item: served after
online requests, service/runtime/priority.py), and scored by ``models.metrics``: the functions
compare uses. A next-frame clip's last ``holdout`` frames are the truth and ``horizon =
holdout``, so a clip's MSE per frame is exactly what ``predict?horizon=k`` on its first frames
answers, scored against its last ``k``. A classifier's answer is ``classify``'s (its top class
first, ties in class order).

Up to FRAMECAST_JOB_CLIPS_IN_FLIGHT clips are in flight; progress, a heartbeat and partial
results go to the store every FRAMECAST_JOB_PROGRESS_INTERVAL_S, and a store that says the job
was cancelled stops it there.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import metrics as M
from service import inference
from service.errors import FramecastError, InvalidInput, ModelNotFound, NotReady
from service.inference import Fit
from service.jobs.datasets import DataSet
from service.runtime.priority import wait_quiet

NEXT_FRAME_METRICS = ("mse_per_frame", "mae_per_frame", "psnr", "ssim")


class JobFailed(Exception):
    """The job cannot go on; the message is the reason its state gives."""


@dataclass
class Plan:
    """What a job computes: ``models`` of one ``task``; next frame: ``holdout`` frames of truth."""

    models: list[str]
    task: str
    holdout: int
    fit: Fit
    top_k: int = 2
    in_flight: int = 2
    examples: int = 4
    quiet_s: float = 0.005  # its CPU work waits for this much online quiet (JOB_YIELD_MS)


@dataclass
class Record:
    """One clip's scores: per model, metric → per-step values (next frame) or 0/1 (classify)."""

    index: int
    name: str
    label: str | None
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    model_ms: dict[str, float] = field(default_factory=dict)


def class_index(label: str, names: list[str]) -> int:
    """The class a data set's label names for a model with classes ``names``: a class name, or
    else a class index (``"3"``); 422 for neither."""
    if label in names:
        return names.index(label)
    if label.isdigit() and int(label) < len(names):
        return int(label)
    raise InvalidInput(
        f"label {label!r} is neither a class of the model ({', '.join(names)}) nor a class index "
        f"below {len(names)}"
    )


class JobRun:
    """One job's run in this process (``run()`` returns the records; raises JobFailed)."""

    def __init__(self, plan: Plan, dataset: DataSet, runtime: Any):
        self.plan, self.dataset, self.runtime = plan, dataset, runtime
        self.records: list[Record | None] = [None] * len(dataset.clips)
        self.done = 0
        self.started = time.perf_counter()
        self.conversions: dict[str, Counter] = {m: Counter() for m in plan.models}
        self.versions: dict[str, set[int]] = {m: set() for m in plan.models}
        self.examples: list[tuple[float, int, dict]] = []  # a heap of the most differing clips
        self.running: dict[str, dict[str, float]] = {m: {} for m in plan.models}
        self.class_names: dict[str, list[str]] = {}

    # -- progress -------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        total = len(self.records)
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = (total - self.done) / rate if rate > 0 else None
        return {
            "done": self.done,
            "total": total,
            "clips_per_s": round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
        }

    def partial(self) -> dict[str, Any]:
        """Running means of each model's metrics over the clips done so far."""
        return {
            "clips": self.done,
            "models": {
                m: {k: v / max(self.done, 1) for k, v in sums.items()}
                for m, sums in self.running.items()
            },
        }

    # -- the run --------------------------------------------------------------------------
    async def run(self) -> list[Record]:
        todo: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(self.records)):
            todo.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    i = todo.get_nowait()
                except asyncio.QueueEmpty:
                    return
                self.records[i] = await self.clip(i)
                self.done += 1

        workers = [asyncio.create_task(worker()) for _ in range(self.plan.in_flight)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return [r for r in self.records if r is not None]

    def _runner(self, name: str, clip: str) -> Any:
        try:
            return self.runtime.get(name)
        except (ModelNotFound, NotReady) as e:
            raise JobFailed(
                f"model {name!r} is no longer served ({e.message}); it was unloaded after "
                f"{self.done} of {len(self.records)} clip(s), at clip {clip!r}"
            ) from None

    async def clip(self, i: int) -> Record:
        c = self.dataset.clips[i]
        try:
            await wait_quiet(self.plan.quiet_s)  # online requests first, for the CPU too
            frames = await asyncio.to_thread(self.dataset.frames, i)
            rec = Record(i, c.name, c.label)
            runners = {m: self._runner(m, c.name) for m in self.plan.models}
            calls = [self._one(rec, m, r, frames) for m, r in runners.items()]
            results = await asyncio.gather(*calls)
        except FramecastError as e:
            if isinstance(e, NotReady) and "shutting down" in e.message:
                raise JobFailed(
                    f"a model stopped serving while the job ran ({e.message}), after "
                    f"{self.done} of {len(self.records)} clip(s)"
                ) from None
            message = e.message if c.name in e.message else f"clip {c.name!r}: {e.message}"
            raise JobFailed(message) from None
        self._keep_example(rec, frames, dict(zip(runners, results)))
        return rec

    async def _one(self, rec: Record, name: str, runner: Any, frames: list) -> Any:
        plan = self.plan
        self.versions[name].add(int(getattr(runner, "version", 1)))
        if plan.task == "next_frame":
            k = plan.holdout
            if len(frames) <= k:
                raise InvalidInput(
                    f"clip {rec.name!r} holds {len(frames)} frame(s); holdout={k} keeps them "
                    "all back as truth and leaves no context"
                )
            context, truth_frames = frames[:-k], frames[-k:]
            p = await inference.prepare(runner, context, plan.fit, held_back=k)
            truth = await inference.fit_frames(
                truth_frames, runner, plan.fit.resize, len(context), plan.fit.how
            )
            answer = await inference.call_background(runner, p.context, k)
            await wait_quiet(plan.quiet_s)
            scores = await asyncio.to_thread(_frame_scores, answer.output, truth)
        else:
            p = await inference.prepare(runner, frames, plan.fit)
            answer = await inference.call_background(runner, p.context)
            names = runner.manifest.class_names or [str(j) for j in range(answer.output.size)]
            self.class_names[name] = list(names)
            truth_i = class_index(str(rec.label), names)
            scores = _class_scores(answer.output, truth_i, plan.top_k, names)
            truth = None
        self.conversions[name][_conversion(p.report())] += 1
        rec.scores[name] = scores
        rec.latency_ms[name] = answer.latency_ms
        rec.model_ms[name] = answer.timing.inference_ms
        sums = self.running[name]
        for metric, v in scores.items():
            if metric != "predicted":
                sums[metric] = sums.get(metric, 0.0) + float(np.mean(v))
        return answer.output, truth, p.context

    def _keep_example(self, rec: Record, frames: list, outs: dict[str, Any]) -> None:
        """Keep the clip among the ``examples`` where the first two models differ most."""
        if self.plan.examples <= 0 or len(outs) < 2:
            return
        a, b = list(outs)[:2]
        metric = "mse_per_frame" if self.plan.task == "next_frame" else "true_score"
        gap = abs(float(np.mean(rec.scores[a][metric])) - float(np.mean(rec.scores[b][metric])))
        item = (gap, rec.index, {"record": rec, "outs": outs})
        if len(self.examples) < self.plan.examples:
            heapq.heappush(self.examples, item)
        elif gap > self.examples[0][0]:
            heapq.heapreplace(self.examples, item)

    def conversions_report(self) -> dict[str, list[dict[str, Any]]]:
        """What fitting changed, once for the job: per model, each kind of change and its clips."""
        return {
            m: [{**dict(key), "clips": n} for key, n in counts.most_common()]
            for m, counts in self.conversions.items()
        }


def _conversion(report: dict[str, Any]) -> tuple:
    resized = report.get("resized_from")
    return (
        ("resized_from", tuple(resized) if resized else None),
        ("fit", report.get("fit") if resized else None),
        ("channels_from", report.get("channels_from")),
        ("frames_dropped", report.get("frames_dropped", 0)),
    )


def _frame_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """A clip's per-step scores, as compare computes them (``models.metrics``)."""
    out = {
        "mse_per_frame": M.mse_per_frame(pred, truth).tolist(),
        "mae_per_frame": M.mae_per_frame(pred, truth).tolist(),
        "psnr": M.psnr(pred, truth).tolist(),
    }
    if min(pred.shape[1:3]) >= 7:
        out["ssim"] = M.ssim(pred, truth).tolist()
    return out


def _class_scores(scores: np.ndarray, truth: int, k: int, names: list[str]) -> dict[str, Any]:
    """Right or wrong as classify answers (its first class: the best, ties in class order)."""
    values = np.asarray(scores, np.float64).reshape(-1)
    order = sorted(range(len(values)), key=lambda j: (values[j] != values[j], -values[j]))
    return {
        "accuracy": float(order[0] == truth),
        "top_k_accuracy": float(truth in order[: min(k, len(order))]),
        "true_score": float(values[truth]),
        "predicted": names[order[0]],
    }
