"""The jobs of one server process: accept, run, cancel, answer; what happens to them when it stops.

A job is accepted by the process whose route read its data set, and run there (its models are
that process's); its rows in the shared store let every process answer for it. Accepting checks
everything a data set can get wrong before the 202 (its form, archive, size, clip count, labels,
the models' task, the first clip fitted to every model), so that a job that starts only fails
for a reason that arises while it runs (a model unloaded, a clip further on that does not
decode) and says which.

Job tasks run in an empty ``contextvars.Context``: a request's deadline (service/http/limits.py)
must not follow a job that outlives it. On shutdown (the app's lifespan ends), each running job
is marked failed with the reason, after its task stops.
"""

from __future__ import annotations

import asyncio
import contextvars
import csv
import json
import logging
import secrets
import shutil
import sqlite3
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service import inference
from service.auth.principals import Principal, check_count, owner_of, sees
from service.checks import require_horizon
from service.config import Settings
from service.errors import FramecastError, InvalidInput, JobNotFound, WrongTask
from service.inference import Fit
from service.jobs import results
from service.jobs.archives import ArchiveLimits
from service.jobs.datasets import DataSet, open_dataset
from service.jobs.runner import JobFailed, JobRun, Plan, class_index
from service.jobs.store import ACTIVE, JobStore
from service.media.frames import Limits

log = logging.getLogger("framecast.jobs")
BASE = "/v1/evaluations"
UPLOAD = "dataset.upload"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def view(job: dict[str, Any], *, full: bool = True) -> dict[str, Any]:
    """A job as the API answers it (``full``: with its partial results or result)."""
    jid, params = job["id"], job.get("params") or {}
    out = {
        "id": jid,
        "state": job["state"],
        "location": f"{BASE}/{jid}",
        "name": params.get("name"),
        "models": params.get("models"),
        "task": params.get("task"),
        "holdout": params.get("holdout"),
        "created": _iso(job.get("created")),
        "started": _iso(job.get("started")),
        "ended": _iso(job.get("ended")),
        "progress": job.get("progress") or {"done": 0, "total": None},
        "dataset": job.get("dataset"),
        "error": job.get("error"),
        "links": {
            k: f"{BASE}/{jid}{v}"
            for k, v in (
                ("self", ""),
                ("events", "/events"),
                ("report", "/report"),
                ("report_json", "/report.json"),
                ("csv", "/clips.csv"),
                ("png", "/plot.png"),
            )
        },
    }
    if full:
        out["partial"] = job.get("partial") if job["state"] in ACTIVE else None
        out["result"] = job.get("result")
    return out


class JobManager:
    def __init__(self, settings: Settings, runtime: Any):
        self.settings, self.runtime = settings, runtime
        self._store: JobStore | None = None
        self.tasks: dict[str, asyncio.Task] = {}
        self.closing = False

    @property
    def store(self) -> JobStore:
        if self._store is None:  # made on first use: an app that runs no job writes nothing
            self._store = JobStore(self.settings.job_dir, self.settings.job_stale_s)
        return self._store

    def folder(self, job_id: str) -> Path:
        return Path(self.settings.job_dir) / job_id

    def new(self) -> tuple[str, Path]:
        """A new job's id and its (empty) folder; expired jobs are swept first."""
        for old in self.store.expired(self.settings.job_max_age_s):
            shutil.rmtree(self.folder(old), ignore_errors=True)
        job_id = secrets.token_hex(8)
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        return job_id, folder

    # -- accepting ------------------------------------------------------------------------
    def plan(self, models: str, holdout: int | None, fit: Fit, top_k: int) -> tuple[Plan, dict]:
        """The runners' task and the plan; 404/422/503 for unknown, mixed or unready models."""
        names = [n.strip() for n in models.split(",") if n.strip()]
        if not names or len(set(names)) != len(names):
            raise InvalidInput(
                f"models={models!r}: name one or more different models, comma-separated"
            )
        runners = {n: self.runtime.get(n) for n in names}
        tasks = {r.manifest.task for r in runners.values()}
        if len(tasks) > 1:
            raise WrongTask(
                "the models are of different tasks ("
                + ", ".join(f"{n}: {r.manifest.task}" for n, r in runners.items())
                + "); an evaluation compares models of one task"
            )
        task = tasks.pop()
        if task == "next_frame":
            if not holdout:
                raise InvalidInput(
                    "holdout=k is needed for next-frame models: the last k frames of each clip "
                    "are the truth its first frames predict"
                )
            require_horizon(holdout, self.settings.max_horizon)
        s = self.settings
        plan = Plan(
            names,
            task,
            holdout or 0,
            fit,
            top_k,
            s.job_clips_in_flight,
            s.job_example_clips,
            s.job_yield_ms / 1000.0,
        )
        return plan, runners

    def open(self, folder: Path, window: int | None, stride: int | None) -> DataSet:
        s = self.settings
        return open_dataset(
            folder / UPLOAD,
            folder,
            limits=Limits(s.max_frames, s.max_frame_pixels, s.max_total_pixels),
            archive=ArchiveLimits(s.job_max_members, s.job_max_unpacked_bytes),
            max_clips=s.job_max_clips,
            max_video_frames=s.job_max_video_frames,
            window=window,
            stride=stride,
        )

    async def check(self, plan: Plan, runners: dict, dataset: DataSet) -> None:
        """422 now for what would fail every clip: labels a classifier lacks, a first clip too
        short for the holdout or a model's context, frames that do not fit."""
        if plan.task == "classify":
            missing = [c.name for c in dataset.clips if c.label is None]
            if missing:
                raise InvalidInput(
                    f"{len(missing)} clip(s) have no label (e.g. {missing[0]!r}); classifiers are "
                    "scored against labels: an .npz 'labels' array, the folder each clip is in, "
                    "or a labels.csv"
                )
            for name, r in runners.items():
                names = r.manifest.class_names or []
                for label in sorted({str(c.label) for c in dataset.clips}):
                    try:
                        class_index(label, names)
                    except InvalidInput as e:
                        raise InvalidInput(f"model {name!r}: {e.message}") from None
        frames = await asyncio.to_thread(dataset.frames, 0)
        k = plan.holdout
        if plan.task == "next_frame" and len(frames) <= k:
            raise InvalidInput(
                f"clip {dataset.clips[0].name!r} holds {len(frames)} frame(s); holdout={k} "
                "leaves it no context"
            )
        for r in runners.values():
            if plan.task == "next_frame":
                await inference.prepare(r, frames[:-k], plan.fit, held_back=k)
            else:
                await inference.prepare(r, frames, plan.fit)

    def check_key(self, caller: Principal | None, running: int | None = None) -> None:
        """429 when ``caller`` (a key with ``max_jobs``) has that many jobs queued or running
        (``running``: counted already)."""
        if caller is None or caller.limits.max_jobs is None:
            return
        held = self.store.running_of(caller.id) if running is None else running
        check_count(caller, "max_jobs", held, "running evaluation jobs")

    async def start(
        self,
        job_id: str,
        plan: Plan,
        dataset: DataSet,
        name: str | None,
        caller: Principal | None = None,
    ) -> dict:
        """Store the accepted job, ``caller``'s, and start it; TooManyJobs (503) past the
        concurrent limit, 429 past the caller's ``max_jobs`` (counted in the same step)."""
        params = {**asdict(plan), "fit": asdict(plan.fit), "name": name}
        summary = dataset.summary()
        await asyncio.to_thread(
            self.store.create,
            {
                "id": job_id,
                "key_id": owner_of(caller),
                "state": "queued",
                "params": params,
                "dataset": summary,
                "progress": {
                    "done": 0,
                    "total": len(dataset.clips),
                    "clips_per_s": 0.0,
                    "eta_s": None,
                },
            },
            self.settings.job_max_concurrent,
            None if caller is None else (lambda held: self.check_key(caller, held)),
        )
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(job_id, plan, dataset), context=contextvars.Context())
        self.tasks[job_id] = task
        log.info(
            "evaluation %s accepted: %d clip(s), models %s",
            job_id,
            len(dataset.clips),
            ",".join(plan.models),
        )
        return view(await asyncio.to_thread(self.get, job_id, caller))

    # -- running --------------------------------------------------------------------------
    async def _run(self, job_id: str, plan: Plan, dataset: DataSet) -> None:
        store, s = self.store, self.settings
        run = JobRun(plan, dataset, self.runtime)
        t0 = time.perf_counter()
        main = asyncio.current_task()
        assert main is not None

        async def ticker() -> None:
            while True:
                await asyncio.sleep(s.job_progress_interval_s)
                try:
                    ok = await asyncio.to_thread(
                        store.update, job_id, progress=run.progress(), partial=run.partial()
                    )
                except sqlite3.Error as e:  # a busy store: the next beat tries again
                    log.warning("evaluation %s: progress not written: %s", job_id, e)
                    continue
                if not ok:  # cancelled (here or by another process), or failed by another
                    main.cancel()
                    return

        tick = None
        try:
            await asyncio.to_thread(store.update, job_id, state="running", started=time.time())
            tick = asyncio.create_task(ticker())
            records = await run.run()  # the ticker beats on while the result is made
            costs = {m: self._costs(m) for m in plan.models}
            result = await asyncio.to_thread(
                results.build,
                run,
                records,
                costs,
                time.perf_counter() - t0,
                s.job_bootstrap_resamples,
                s.job_seed,
            )
            await asyncio.to_thread(self._write, job_id, run, records, result)
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
            await asyncio.to_thread(
                store.finish, job_id, "done", progress=run.progress(), result=result, partial=None
            )
            log.info("evaluation %s done: %s", job_id, result["verdict"])
        except JobFailed as e:
            log.warning("evaluation %s failed: %s", job_id, e)
            store.finish(job_id, "failed", error=str(e), progress=run.progress())
        except asyncio.CancelledError:
            if self.closing:
                why = (
                    f"the server stopped while the job ran, after {run.done} of "
                    f"{len(run.records)} clip(s); submit it again"
                )
                store.finish(job_id, "failed", error=why, progress=run.progress())
            else:
                store.finish(job_id, "cancelled", error="cancelled", progress=run.progress())
            log.info("evaluation %s stopped after %d clip(s)", job_id, run.done)
        except Exception as e:  # noqa: BLE001 - a bug: the job says so, the server goes on
            log.exception("evaluation %s failed unexpectedly", job_id)
            store.finish(
                job_id,
                "failed",
                error=f"internal error ({type(e).__name__}: {e}); this is a bug, please report it",
                progress=run.progress(),
            )
        finally:
            if tick is not None:
                tick.cancel()
            self.tasks.pop(job_id, None)
            self._drop_data(job_id)

    def _costs(self, model: str) -> dict[str, Any]:
        try:
            return dict(getattr(self.runtime.get(model), "costs", {}) or {})
        except FramecastError:  # unloaded as the job ended: its result says nothing of cost
            return {}

    def _write(self, job_id: str, run: JobRun, records: list, result: dict) -> None:
        folder = self.folder(job_id)
        (folder / "report.json").write_text(json.dumps(result))
        head, rows = results.csv_rows(records, run.plan.models)
        with open(folder / "clips.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows)

    def _drop_data(self, job_id: str) -> None:
        """The data set's files go once the job ends (its report keeps what it shows)."""
        folder = self.folder(job_id)
        for p in (folder / UPLOAD, folder / "video_frames.npy"):
            p.unlink(missing_ok=True)
        shutil.rmtree(folder / "members", ignore_errors=True)

    # -- answering ------------------------------------------------------------------------
    def get(self, job_id: str, caller: Principal | None = None) -> dict[str, Any]:
        """The job; 404 when there is none, or it is another key's (with keys on: the caller's
        own jobs only, every job for an admin key), with the same message."""
        job = self.store.get(job_id) if len(job_id) < 64 else None
        if job is None or not sees(caller, job.get("key_id")):
            raise JobNotFound(f"no evaluation job {job_id!r}; GET {BASE} lists them")
        return job

    def listing(self, caller: Principal | None = None) -> list[dict[str, Any]]:
        """The jobs ``caller`` may see, newest first."""
        return [j for j in self.store.jobs() if sees(caller, j.get("key_id"))]

    def cancel(self, job_id: str, caller: Principal | None = None) -> dict[str, Any]:
        """Cancel a queued or running job (its runner stops within a progress interval, in
        whichever process runs it); a finished job is deleted with its files."""
        job = self.get(job_id, caller)
        if job["state"] in ACTIVE:
            self.store.cancel(job_id, "cancelled (DELETE)")
            task = self.tasks.get(job_id)
            if task is not None:
                task.get_loop().call_soon_threadsafe(task.cancel)
            return self.get(job_id, caller)
        self.store.delete(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
        return {**job, "state": "deleted"}

    async def close(self) -> None:
        """Stop every job this process runs; each is marked failed with the reason."""
        self.closing = True
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
