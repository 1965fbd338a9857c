"""The evaluation-job group of framecast's settings (``FRAMECAST_JOB_*``) and how cost facts are
measured (``FRAMECAST_MEASURE_MEMORY``, ``FRAMECAST_COST_CACHE_DIR``).

A part of :class:`service.config.Settings`, which inherits these fields and reads them from the
environment with the others; declared here only to keep config.py one screenful per group. Never
instantiated on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

MIB = 1 << 20
STATE_DIR = Path.home() / ".local" / "state" / "framecast"


class JobSettings(BaseSettings):
    # evaluation jobs (/v1/evaluations, service/jobs/): where they live and what one may hold
    job_dir: Path = Field(
        STATE_DIR / "jobs",
        description="the folder of evaluation jobs: their SQLite store (jobs.sqlite) and one "
        "sub-folder per job (its data set, extracted clips, report). Every `--workers` process "
        "given the same folder answers for every job; a finished report survives a restart",
    )
    job_max_dataset_bytes: int = Field(
        1024 * MIB,
        ge=1024,
        description="largest data set body of POST /v1/evaluations (an .npy, .npz, .zip, "
        ".tar(.gz) or video); larger is a 413 (other routes keep FRAMECAST_MAX_UPLOAD_BYTES)",
    )
    job_max_unpacked_bytes: int = Field(
        2048 * MIB,
        ge=1024,
        description="most bytes an archive's members may unpack to, in all (their headers are "
        "checked before a byte is unpacked, and every member is counted while it unpacks, so "
        "a zip bomb or a lying header is refused with a 413 or 422)",
    )
    job_max_members: int = Field(
        50_000,
        ge=1,
        description="most members (files and folders) in a data set archive; more is a 413",
    )
    job_max_clips: int = Field(
        10_000, ge=1, description="most clips in one data set; more is a 413"
    )
    job_max_video_frames: int = Field(
        20_000,
        ge=1,
        description="most frames decoded from one long video cut into windows (window=, stride=)",
    )
    job_max_concurrent: int = Field(
        2,
        ge=1,
        description="evaluation jobs queued or running at once (every worker sharing "
        "FRAMECAST_JOB_DIR counted); one more is answered 503 with Retry-After",
    )
    job_max_age_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="a finished (done, failed, cancelled) job and its files are deleted this "
        "long after it ended",
    )
    job_upload_timeout_s: float = Field(
        600.0,
        gt=0,
        description="how long the data set body of POST /v1/evaluations may take to arrive "
        "and be checked (other requests keep FRAMECAST_REQUEST_TIMEOUT_S)",
    )
    job_clips_in_flight: int = Field(
        2,
        ge=1,
        description="clips of one job decoded, fitted and waiting for the models at once",
    )
    job_batch_clips: int = Field(
        1,
        ge=1,
        description="clips of evaluation jobs in one model call at most (they yield to online "
        "requests between calls: a small call keeps an online request's wait short)",
    )
    job_yield_ms: float = Field(
        5.0,
        ge=0,
        description="a job's clips reach a model, and a job decodes and scores a clip, only "
        "after the process has had no online request queued, in a batch or being decoded for "
        "this long",
    )
    job_progress_interval_s: float = Field(
        0.5,
        gt=0,
        description="how often a running job writes its progress (and partial results) to the "
        "store, and how often GET …/events looks for news",
    )
    job_stale_s: float = Field(
        30.0,
        gt=0,
        description="a job marked running whose process wrote no heartbeat for this long (it "
        "was killed) is marked failed by whichever process reads it",
    )
    job_bootstrap_resamples: int = Field(
        2000,
        ge=100,
        description="bootstrap resamples behind each 95 % confidence interval",
    )
    job_seed: int = Field(
        0, ge=0, description="seed of the bootstrap (the same data set gives the same intervals)"
    )
    job_example_clips: int = Field(
        4,
        ge=0,
        le=32,
        description="clips where the models differ most shown as strips in the report",
    )
    # cost facts (service/runtime/costs.py, models/costs.py)
    measure_memory: Literal["background", "off"] = Field(
        "background",
        description="measure each model's peak memory per clip (activations at batch 1) in a "
        "separate low-priority process once it serves (background), cached by checkpoint "
        "sha256 in FRAMECAST_COST_CACHE_DIR; off: reported as not measured",
    )
    cost_cache_dir: Path = Field(
        STATE_DIR / "costs",
        description="where measured peak memory figures are kept, one JSON per checkpoint",
    )
