"""Triton's model configuration and statistics extensions over V2 (what tritonclient's
``get_model_config`` and ``get_inference_statistics``, and perf_analyzer, read).

- ``GET /v2/models/{name}/config`` (and ``/versions/{v}/config``): the model in Triton's JSON
  model configuration: ``max_batch_size`` (FRAMECAST_MAX_BATCH_SIZE), ``input`` / ``output``
  with ``data_type`` and ``dims`` (no batch axis; -1 for a free one), ``dynamic_batching`` with
  the batcher's real settings (the warmed bucket sizes as ``preferred_batch_size``,
  FRAMECAST_MAX_BATCH_DELAY_MS as ``max_queue_delay_microseconds``) and the instance (CPU or GPU).
- ``GET /v2/models/stats``, ``/v2/models/{name}/stats``, ``/v2/models/{name}/versions/{v}/stats``:
  per model, requests by outcome (``success``, ``fail``) and the time of their phases (``queue``;
  ``compute_input``: reading and decoding the upload; ``compute_infer``: the model calls;
  ``compute_output``: building the answer), each a count and cumulative nanoseconds, with the
  model calls by batch size (``batch_stats``), the clips inferred (``inference_count``) and the
  calls (``execution_count``). ``success`` and ``fail`` count requests; the phases count clips
  (each clip of a V2 batch goes through the model's queue on its own, and the batcher merges
  them again). They count every request that reached the model since the process started
  (``/v1`` predict and classify, compare (once per model it ran), a stream's HTTP posts, V2 infer
  over HTTP and gRPC): with ``--workers N``, the worker that answered.

Registered before ``/v2/models/{name}`` so that ``/v2/models/stats`` is not read as a model name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from models.versions import parse_policy, read_policy
from service.deps import Runtime, RuntimeDep, SettingsDep
from service.inference import Runner
from service.routes.v2.infer import V2_RESPONSES, _runner, model_metadata
from service.routes.v2.tensors import INPUT, input_specs, output_specs
from service.telemetry import Metrics

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], responses=V2_RESPONSES)


def version_policy(r: Runner, default: str) -> dict:
    """The version policy of ``r``'s model folder in Triton's shape (a flat folder: its one
    version)."""
    home = Path(getattr(r, "home", r.folder))
    if home == r.folder:
        return {"specific": {"versions": [r.version]}}
    try:
        return read_policy(home, parse_policy(default)).as_config()
    except ValueError:  # the manifest changed since the load: what was loaded by
        return parse_policy(default).as_config()


def model_config(
    r: Runner,
    max_batch_size: int,
    max_delay_ms: float,
    policy: str = "latest:1",
    idle_s: float | None = None,
    max_sequences: int | None = None,
) -> dict[str, Any]:
    """``r`` in Triton's JSON model configuration (``policy``: the default version policy).

    A next-frame model takes sequences (the sequence extension: ``parameters.sequence_id``,
    ``sequence_start``, ``sequence_end``; each is one of framecast's streams, ``idle_s`` its
    idle timeout, ``max_sequences`` how many may be open), so its scheduling is Triton's
    ``sequence_batching`` with the ``oldest`` strategy: the steps of different sequences are
    batched by the same batcher as other requests, whose settings it carries. Triton's config
    holds one scheduler (a oneof in the protobuf), so a classifier's is ``dynamic_batching``."""
    out = _config(r, max_batch_size, max_delay_ms, policy)
    if r.manifest.task == "next_frame" and idle_s is not None:
        batching = out.pop("dynamic_batching")
        out["sequence_batching"] = {
            "max_sequence_idle_microseconds": int(idle_s * 1e6),
            "oldest": {"max_candidate_sequences": max_sequences or 1, **batching},
        }
    return out


def _config(r: Runner, max_batch_size: int, max_delay_ms: float, policy: str) -> dict[str, Any]:
    gpu = r.placement.device.startswith("gpu")
    (inp,) = input_specs(r)
    buckets = getattr(r, "buckets", None) or (max_batch_size,)
    return {
        "name": r.name,
        "platform": model_metadata(r)["platform"],
        "backend": "framecast",
        "version_policy": version_policy(r, policy),
        "max_batch_size": max_batch_size,
        "input": [
            {
                "name": INPUT,
                "data_type": "TYPE_FP32",
                "format": "FORMAT_NONE",
                "dims": inp["shape"][1:],
                "allow_ragged_batch": False,
            }
        ],
        "output": [
            {"name": o["name"], "data_type": "TYPE_FP32", "dims": o["shape"][1:]}
            for o in output_specs(r)
        ],
        "dynamic_batching": {
            "preferred_batch_size": [b for b in buckets if b <= max_batch_size],
            "max_queue_delay_microseconds": int(max_delay_ms * 1000),
        },
        "instance_group": [
            {
                "name": r.name,
                "kind": "KIND_GPU" if gpu else "KIND_CPU",
                "count": 1,
                "gpus": [int(r.placement.device.split(":")[1])] if gpu else [],
            }
        ],
        "parameters": {
            "task": {"string_value": r.manifest.task},
            "architecture": {"string_value": r.manifest.architecture},
        },
    }


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


@router.get(
    "/models/stats",
    summary="Inference statistics of every model (the statistics extension)",
    response_model=None,
)
async def all_stats(request: Request, runtime: RuntimeDep) -> dict:
    return {"model_stats": stats_rows(runtime, _metrics(request))}


def stats_rows(
    runtime: Runtime, metrics: Metrics, name: str = "", version: str | None = None
) -> list[dict]:
    """The statistics of ``name``'s ``version`` (a number or a label), else of every version
    of ``name``, else of every version of every model served (as Triton answers)."""
    if name and version:
        r = _runner(runtime, name, version)
        return [metrics.model_stats(r.name, str(r.version))]
    if name:
        names = [_runner(runtime, name).name]
    else:
        names = sorted(runtime.models.serving())
    return [
        metrics.model_stats(n, str(v)) for n in names for v in runtime.models.versions(n) or [1]
    ]


@router.get(
    "/models/{name}/stats",
    summary="Inference statistics of one model: counts and cumulative ns by phase, batch sizes",
    response_model=None,
)
@router.get("/models/{name}/versions/{version}/stats", include_in_schema=False, response_model=None)
async def stats(
    request: Request, runtime: RuntimeDep, name: str, version: str | None = None
) -> dict:
    return {"model_stats": stats_rows(runtime, _metrics(request), name, version)}


@router.get(
    "/models/{name}/config",
    summary="Model configuration in Triton's JSON shape (tensors, batching, instance)",
    response_model=None,
)
@router.get(
    "/models/{name}/versions/{version}/config", include_in_schema=False, response_model=None
)
async def config(
    runtime: RuntimeDep, settings: SettingsDep, name: str, version: str | None = None
) -> dict:
    r = _runner(runtime, name, version)
    return model_config(
        r,
        settings.max_batch_size,
        settings.max_batch_delay_ms,
        settings.version_policy,
        settings.stream_idle_timeout_s,
        settings.stream_max_per_model,
    )
