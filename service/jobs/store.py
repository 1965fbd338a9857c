"""The job store: one SQLite file (``jobs.sqlite``, the standard library's ``sqlite3``) in
FRAMECAST_JOB_DIR, beside one folder per job.

Every process given the same folder (the workers of ``framecast serve --workers N``, a restarted
server) reads and writes the same rows: the process that accepted a job runs it and writes its
progress, partial results and heartbeat; any process answers for it (its state, its report, its
events) and may ask it to stop (``cancel``: the runner reads it with each progress write). Writes
are short transactions in WAL mode, so readers never wait for the writer.

A job whose process is gone is failed by the first process that reads it, with the reason: its
owner ran on this host and its pid is no more, or its heartbeat is older than FRAMECAST_JOB_STALE_S
(a process on another host, or one that stopped answering).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.errors import TooManyJobs

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
JSON_FIELDS = ("params", "dataset", "progress", "partial", "result")
COLUMNS = (
    "id",
    "state",
    "created",
    "started",
    "ended",
    "heartbeat",
    "owner",
    "key_id",
    "cancel",
    "error",
    *JSON_FIELDS,
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL, started REAL, ended REAL,
    heartbeat REAL, owner TEXT, cancel INTEGER NOT NULL DEFAULT 0, error TEXT,
    params TEXT, dataset TEXT, progress TEXT, partial TEXT, result TEXT, key_id TEXT
)
"""
# ``owner`` is the server process running the job (host:pid, for the reaper); ``key_id`` the API
# key that submitted it (service/auth/principals.py: who may see it; NULL with keys off)


def owner_id() -> str:
    """This process, as a job's owner: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(owner: str | None) -> bool:
    """Whether ``owner`` ran on this host and its process no longer exists."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class JobStore:
    def __init__(self, folder: Path, stale_s: float = 30.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "jobs.sqlite"
        self.stale_s = stale_s
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)").fetchall()}
            if "key_id" not in columns:  # a job folder of a release before the keys
                try:
                    db.execute("ALTER TABLE jobs ADD COLUMN key_id TEXT")
                except sqlite3.OperationalError:  # another process added it first
                    pass

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def _row(self, row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        for k in JSON_FIELDS:
            job[k] = json.loads(job[k]) if job[k] else None
        return job

    def _reap(self, db: sqlite3.Connection, now: float) -> None:
        """Fail the active jobs whose process is gone (see the module's docstring)."""
        for row in db.execute(
            "SELECT id, owner, heartbeat, progress FROM jobs WHERE state IN ('queued', 'running')"
        ).fetchall():
            why = None
            if _gone(row["owner"]):
                why = f"its server process ({row['owner']}) stopped without finishing it"
            elif row["heartbeat"] is not None and now - row["heartbeat"] > self.stale_s:
                why = (
                    f"its server process ({row['owner']}) sent no heartbeat for "
                    f"{now - row['heartbeat']:.0f} s (FRAMECAST_JOB_STALE_S)"
                )
            if why is not None:
                done = (json.loads(row["progress"] or "{}") or {}).get("done", 0)
                db.execute(
                    "UPDATE jobs SET state='failed', ended=?, error=? WHERE id=? AND state IN "
                    "('queued', 'running')",
                    (now, f"{why} after {done} clip(s); submit it again", row["id"]),
                )

    def running_of(self, key_id: str) -> int:
        """The queued or running jobs that ``key_id`` submitted."""
        with self._db() as db:
            self._reap(db, time.time())
            return self._running_of(db, key_id)

    def _running_of(self, db: sqlite3.Connection, key_id: str) -> int:
        (n,) = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE key_id=? AND state IN ('queued', 'running')",
            (key_id,),
        ).fetchone()
        return n

    def create(
        self, job: dict[str, Any], max_active: int, admit: Callable[[int], None] | None = None
    ) -> None:
        """Insert a new job; TooManyJobs (503) when ``max_active`` are queued or running; with
        ``admit``, it is called in the same transaction with the queued or running jobs of the
        job's ``key_id`` (it raises to refuse: a key's ``max_jobs``)."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._reap(db, now)
                if admit is not None:
                    admit(self._running_of(db, job.get("key_id") or ""))
                (active,) = db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"
                ).fetchone()
                if active >= max_active:
                    raise TooManyJobs(
                        f"{active} evaluation job(s) are queued or running; at most {max_active} "
                        "at once (FRAMECAST_JOB_MAX_CONCURRENT): retry when one ends",
                        retry_after_s=10,
                    )
                row = {**job, "created": now, "heartbeat": now, "owner": owner_id()}
                row = {k: json.dumps(v) if k in JSON_FIELDS else v for k, v in row.items()}
                keys = ", ".join(row)
                db.execute(
                    f"INSERT INTO jobs ({keys}) VALUES ({', '.join('?' * len(row))})",
                    tuple(row.values()),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._db() as db:
            self._reap(db, time.time())
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else self._row(row)

    def jobs(self) -> list[dict[str, Any]]:
        with self._db() as db:
            self._reap(db, time.time())
            rows = db.execute(
                "SELECT id, state, created, started, ended, owner, key_id, cancel, error, "
                "params, dataset, progress FROM jobs ORDER BY created DESC"
            ).fetchall()
        return [{**self._row_partial(r)} for r in rows]

    def _row_partial(self, row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        for k in ("params", "dataset", "progress"):
            job[k] = json.loads(job[k]) if job[k] else None
        return job

    def update(self, job_id: str, **fields: Any) -> bool:
        """Set ``fields`` of an active job (and its heartbeat); False when it is no longer
        active (cancelled, or failed by another process), or asked to stop."""
        fields["heartbeat"] = time.time()
        sets = ", ".join(f"{k}=?" for k in fields)
        values = [json.dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()]
        with self._db() as db:
            cur = db.execute(
                f"UPDATE jobs SET {sets} WHERE id=? AND state IN ('queued', 'running')",
                (*values, job_id),
            )
            row = db.execute("SELECT cancel FROM jobs WHERE id=?", (job_id,)).fetchone()
        return cur.rowcount == 1 and row is not None and not row["cancel"]

    def finish(self, job_id: str, state: str, *, error: str | None = None, **fields: Any) -> bool:
        """End an active job in ``state`` (done, failed, cancelled); False if it had ended."""
        fields.update(state=state, error=error, ended=time.time())
        sets = ", ".join(f"{k}=?" for k in fields)
        values = [json.dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()]
        with self._db() as db:
            cur = db.execute(
                f"UPDATE jobs SET {sets} WHERE id=? AND state IN ('queued', 'running')",
                (*values, job_id),
            )
        return cur.rowcount == 1

    def cancel(self, job_id: str, reason: str) -> bool:
        """Ask an active job to stop (its runner ends it within a progress interval) and mark
        it cancelled; False when it had ended."""
        with self._db() as db:
            cur = db.execute(
                "UPDATE jobs SET cancel=1, state='cancelled', ended=?, error=? WHERE id=? AND "
                "state IN ('queued', 'running')",
                (time.time(), reason, job_id),
            )
        return cur.rowcount == 1

    def delete(self, job_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def expired(self, max_age_s: float) -> list[str]:
        """The ended jobs older than ``max_age_s`` (their rows are deleted; the caller deletes
        their folders)."""
        cutoff = time.time() - max_age_s
        with self._db() as db:
            ids = [
                r["id"]
                for r in db.execute(
                    "SELECT id FROM jobs WHERE state IN ('done', 'failed', 'cancelled') "
                    "AND ended < ?",
                    (cutoff,),
                ).fetchall()
            ]
            db.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in ids])
        return ids
