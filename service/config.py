"""The one place that reads the environment: ``Settings`` (pydantic-settings, prefix
``FRAMECAST_``).

Every setting is an environment variable ``FRAMECAST_<NAME>`` (e.g. ``FRAMECAST_MAX_HORIZON=20``)
or a keyword to ``Settings(...)``. A bad value fails at start with :class:`SettingsError`, whose
message names the variable, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.repository import BUNDLED_DIR
from service.configs.client import ClientSettings
from service.configs.jobs import JobSettings
from service.configs.process import ProcessSettings
from service.configs.ray import MIB, RaySettings
from service.configs.security import SecuritySettings
from service.configs.streams import StreamSettings

ENV_PREFIX = "FRAMECAST_"


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


class Settings(
    RaySettings,
    StreamSettings,
    SecuritySettings,
    ClientSettings,
    JobSettings,
    ProcessSettings,
    BaseSettings,
):
    """Every setting; the Ray Serve, stream, access, client, job and process groups are declared
    in service/configs/ray.py, service/configs/streams.py, service/configs/security.py,
    service/configs/client.py, service/configs/jobs.py and service/configs/process.py."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, validate_default=True
    )

    # where the models are and how they are loaded
    models_dir: Path = Field(BUNDLED_DIR, description="folder holding one sub-folder per model")
    load_mode: Literal["background", "blocking"] = Field(
        "background",
        description="background: serve /healthz at once and load in a thread (/readyz says 503 "
        "until done); blocking: load before accepting requests, a failure stops start-up (exit "
        "1); a worker that `serve --workers` restarts always loads blocking",
    )
    load_delay_s: float = Field(
        0.0,
        ge=0,
        description="wait this long before loading the models at start-up (tests: a loading "
        "window long enough to observe, as real checkpoints make it); 0: none",
    )
    warmup: bool = Field(True, description="call every model once on its serving shape at load")
    strict_load: bool = Field(
        False,
        description="any model that fails to load stops start-up; off: it is listed as failed "
        "in /v1/models and the others are served",
    )
    model_poll_s: float = Field(
        0.0,
        ge=0,
        description="scan the models folder every this many seconds and load new, reload "
        "changed and unload removed model folders (as TF Serving polls); 0: off",
    )
    version_policy: str = Field(
        "latest:1",
        description="which numbered versions (DIR/<name>/<n>/) of a model are served when its "
        "manifest.json says no version_policy: latest:N (the N highest), all, or "
        "specific:1,3; a request without a version reaches the highest served",
    )
    max_labels: int = Field(
        256,
        ge=1,
        description="version labels one model may hold (PUT /v2/repository/models/{name}/"
        "labels/{label}); one more is a 400",
    )
    warm_frames: int = Field(
        10,
        ge=1,
        description="clip length a free-time-axis model is warmed at (its manifest's context "
        "wins); other lengths are compiled once each, on first use",
    )
    max_compiled_lengths: int = Field(
        32,
        ge=1,
        description="compiled clip lengths kept per free-time-axis model (least recently "
        "used dropped)",
    )
    keras_backend: str = Field(
        "tensorflow",
        validation_alias=AliasChoices("keras_backend", "KERAS_BACKEND"),
        description="Keras' own KERAS_BACKEND variable (no FRAMECAST_ prefix), read here so "
        "start-up can say what is missing: tensorflow (the extras [cpu], [gpu]) or jax",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: the first GPU the backend sees, else the CPU"
    )
    gpu_memory_growth: bool = Field(
        True, description="TensorFlow: allocate GPU memory as needed so models share one GPU"
    )

    # HTTP server (used by `framecast serve`; uvicorn's own flags win when started by uvicorn)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    grpc_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="also serve the V2 protocol over gRPC (inference.GRPCInferenceService) on "
        "this port of FRAMECAST_HOST, in the same process (Triton's convention: 8001); "
        "unset (or off): no gRPC",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="server processes sharing the port (SO_REUSEPORT), each with its own copy "
        "of every model and its own batcher; with several GPUs, worker i serves on GPU i mod n",
    )
    worker_index: int = Field(0, ge=0, description="set by `framecast serve --workers` itself")
    worker_count: int = Field(
        1, ge=1, description="set by `framecast serve --workers` itself: workers on this host"
    )
    worker_restarts: int = Field(
        5,
        ge=0,
        description="--workers: a worker killed by a signal (SIGKILL, a crash, OOM) is started "
        "again, at most this many times a minute; past it the supervisor stops them all",
    )
    reuse_port: bool = Field(
        False,
        description="set by `framecast serve --workers` itself: listen on a SO_REUSEPORT socket "
        "that every worker shares",
    )
    ready_fd: int | None = Field(
        None,
        ge=0,
        description="set by `framecast serve --workers` itself: a pipe the worker writes one "
        "byte to once it takes connections (the supervisor's word that a restart is back)",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # limits on what one request may ask for
    max_upload_bytes: int = Field(
        64 * MIB, ge=1024, description="request body cap (Triton's HTTP default: 64 MiB)"
    )
    oversize_drain_bytes: int = Field(
        16 * MIB,
        ge=0,
        description="a body declared over max_upload_bytes by at most this much is read and "
        "dropped after its 413 (so a client that sends it whole reads the answer "
        "instead of a connection reset); one declared larger is cut off at once",
    )
    max_files: int = Field(256, ge=1, description="most file parts in one multipart upload")
    max_frames: int = Field(256, ge=1, description="most frames one request may upload")
    max_frame_pixels: int = Field(
        4096 * 4096, ge=64, description="most pixels (width x height) in one uploaded frame"
    )
    max_total_pixels: int = Field(
        64 * MIB,
        ge=64,
        description="most pixels in all frames of one request (64 Mi pixels = 256 MiB as float32)",
    )
    max_video_stride: int = Field(
        1000,
        ge=1,
        description="largest stride= of a video upload (keep every stride-th decoded frame); "
        "the frames it skips are still decoded",
    )
    inline_work_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="uploads up to this size are decoded and fitted on the event loop (a few "
        "hundred microseconds); larger ones in a worker thread, so that they never stall "
        "other requests. The hop to a thread costs more CPU than decoding a small clip",
    )
    inline_work_pixels: int = Field(
        1 << 20,
        ge=0,
        description="an upload is decoded on the event loop only when it is under "
        "FRAMECAST_INLINE_WORK_BYTES and its headers declare at most this many pixels in all "
        "(a small file may hold huge frames: an APNG of 4096x4096 pages)",
    )
    decode_timeout_s: float = Field(
        10.0,
        gt=0,
        description="longest time decoding one upload may take (off the event loop); past it "
        "the request is answered 413 and the decoding stops at its next frame",
    )
    cpu_threads: Annotated[int, Field(ge=0, le=1024)] | Literal["auto"] = Field(
        "auto",
        description="TensorFlow's CPU threads for model work. auto: serving on the CPU, the "
        "intra-op pool gets this worker's share of the cores less one (at least 1), the core "
        "left to the event loop that parses, decodes and answers; the inter-op pool and GPU "
        "hosts keep TensorFlow's defaults. N: both pools N (1 with --workers = cores: "
        "process-parallel). 0: TensorFlow's defaults (every core in both pools). docs/"
        "performance.md, 'The front end'. TensorFlow backend only",
    )
    hot_path: bool = Field(
        True,
        description="answer POST /v1/models/{name}/classify and /predict without the router "
        "(service/http/hotpath.py): the same answers for less CPU per request; false sends them "
        "through FastAPI like every other route",
    )
    max_horizon: int = Field(
        30, ge=1, description="largest horizon (rollout steps) of a prediction"
    )
    max_queue: int = Field(
        128,
        ge=1,
        description="requests queued or in a batch per model; one more is "
        "answered 503 with Retry-After at once (4 x "
        "max_batch_size by default: at most ~4 batches of wait)",
    )
    max_batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="most clips merged into one model call (batches are "
        "padded to 1, 2, 4, 8, 12, 16, 24, 32, ... capped here; "
        "each size is warmed at load)",
    )
    pad_batches: Literal["auto", "always", "never"] = Field(
        "auto",
        description="pad each batch to a warmed bucket size (1, 2, 4, 8, 12, 16, ...). auto: "
        "under JAX, which compiles every new shape; not under TensorFlow, whose traced "
        "function keeps a free batch axis once warm-up has called several sizes, so exact "
        "batches compute no padding rows",
    )
    max_batch_delay_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="longest wait for more requests to fill a batch, counted from the first "
        "request's arrival; only waited while other requests are still being decoded, "
        "so a lone request never waits",
    )
    inference_timeout_s: float = Field(
        60.0, gt=0, description="a model call slower than this → 503"
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="deadline of one request from its arrival: past it the answer is "
        "504 and the request's queued or unfinished model work is dropped",
    )
    body_idle_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request body that sends no bytes for this long is answered 408 and its "
        "connection closed (the whole body must also arrive within FRAMECAST_REQUEST_TIMEOUT_S)",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a connection whose request line and headers are not complete this long "
        "after their first byte (or after it opened) is answered 408 and closed, however slowly "
        "it trickles bytes",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open connections one server process holds; a new one beyond it is "
        "answered 503 with Retry-After at once and closed",
    )
    keep_alive_timeout_s: float = Field(
        5.0,
        gt=0,
        description="an idle keep-alive connection is closed after this long (uvicorn's "
        "timeout_keep_alive)",
    )
    keep_alive_max_requests: int = Field(
        1000,
        ge=1,
        description="requests one keep-alive connection may carry; the last is answered with "
        "Connection: close (nginx's keepalive_requests)",
    )
    compress_min_bytes: int = Field(
        1024, ge=0, description="JSON and text answers of at least this many bytes are "
        "compressed for a client that accepts gzip or deflate (never images, .npy, tensors)",
    )  # fmt: skip
    max_json_depth: int = Field(
        32, ge=2, le=1000, description="deepest nesting of arrays/objects in a JSON body"
    )
    max_json_items: int = Field(
        4 * MIB,
        ge=16,
        description="most values in one JSON body (counted as commas + 1); "
        "more is answered 413 before parsing",
    )
    grpc_max_fields: int = Field(
        100_000,
        ge=64,
        description="most protobuf fields in one gRPC inference message, at every depth (an "
        "unpacked repeated value or a bytes item counts one each; packed contents and "
        "raw_input_contents count one a tensor): past it RESOURCE_EXHAUSTED before the message "
        "is parsed, so no message of millions of tiny fields stalls the server",
    )

    # logs, shutdown (API keys, WebSockets and CORS: service/configs/security.py)
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object a line")
    log_probes: bool = Field(
        False,
        description="access lines for /healthz, /readyz, /metrics and /v2/health/* at INFO like "
        "every other request; off: at DEBUG (a poller every few seconds would flood the log)",
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="on SIGTERM: stop accepting, give in-flight requests this long "
        "to finish, then exit (uvicorn's timeout_graceful_shutdown)",
    )

    # compare: which model of each architecture, when several of one task are loaded
    compare_conv2d_lstm_next_frame: str | None = None
    compare_convlstm2d_next_frame: str | None = None
    compare_conv2d_lstm_classify: str | None = None
    compare_convlstm2d_classify: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("version_policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        from models.versions import parse_policy

        try:
            return str(parse_policy(v, "FRAMECAST_VERSION_POLICY"))
        except ValueError as e:  # ManifestError
            raise ValueError(str(e)) from None

    @field_validator("grpc_port", mode="before")
    @classmethod
    def _off(cls, v: object) -> object:
        return None if isinstance(v, str) and v.strip().lower() in ("", "off", "none") else v

    @model_validator(mode="after")
    def _two_ports(self) -> Settings:
        if self.grpc_port is not None and self.grpc_port == self.port:
            raise ValueError(
                f"FRAMECAST_GRPC_PORT={self.grpc_port} is the HTTP port (FRAMECAST_PORT): "
                "the gRPC port must be another one"
            )
        return self

    def compare_choice(self, architecture: str, task: str) -> str | None:
        return getattr(self, f"compare_{architecture}_{task}")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(**overrides) -> Settings:
    """``Settings`` from the environment plus ``overrides``; errors name the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            if not err["loc"]:  # a rule across settings (model_validator): its message
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            value = "<hidden>" if field == "api_keys" else err.get("input")
            problems.append(f"{env_name(field)}={value!r}: {err['msg']}")
        raise SettingsError("bad setting: " + "; ".join(problems)) from None
