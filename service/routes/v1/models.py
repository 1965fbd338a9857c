"""The loaded models: what they are, for whom, with which shapes and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Path

from service.deps import ModelState, Runtime, RuntimeDep, Settings, SettingsDep
from service.inference import Runner
from service.routes import params
from service.routes.openapi import error_responses
from service.schemas import CostFacts, InputSpec, ModelInfo, ModelListResponse
from service.streams.stepping import stream_plan

router = APIRouter(prefix="/v1/models", tags=["models"])

NAME_EXAMPLE = "convlstm2d_next_frame"


def cost_facts(r: Runner) -> CostFacts:
    """``r``'s cost facts (counted at load, memory measured since; service/runtime/costs.py)."""
    facts = getattr(r, "costs", None) or {}
    if not facts:  # a runner that counted none (a Ray deployment's): the manifest's word
        flops = r.manifest.flops_per_clip or None
        why = None if flops else "not counted for a model served by Ray Serve"
        return CostFacts(params=r.manifest.params, flops_per_clip=flops, flops_note=why)
    return CostFacts(**facts)


def model_info(
    r: Runner,
    state: str = "ready",
    settings: Settings | None = None,
    runtime: Runtime | None = None,
) -> ModelInfo:
    """``r`` described (``runtime``: with every version of its name served and its labels)."""
    m = r.manifest
    cost = cost_facts(r)
    return ModelInfo(
        version=r.version,
        versions=list(runtime.models.versions(m.name)) if runtime else [r.version],
        labels=runtime.models.labels(m.name) if runtime else {},
        stream=stream_plan(r, settings) if settings is not None else None,
        name=m.name,
        state=state,
        display_name=getattr(m, "display_name", ""),
        description=getattr(m, "description", ""),
        architecture=m.architecture,
        task=m.task,
        output=m.output,
        source=m.source,
        input=InputSpec(
            frames=m.frames,
            height=m.height,
            width=m.width,
            channels=m.channels,
            context=m.context,
        ),
        class_names=m.class_names,
        params=m.params,
        flops_per_clip=cost.flops_per_clip,
        cost=cost,
        device=r.placement.description,
        sha256=m.sha256,
        ready=r.ready,
        warmup_ms=r.warmup_ms,
        rollout=r.rollout,
        metrics=r.card,
    )


@router.get(
    "",
    response_model=ModelListResponse,
    summary="Every model: those served, and those that failed to load (with why)",
    responses=error_responses(503),
)
async def list_models(runtime: RuntimeDep, settings: SettingsDep) -> ModelListResponse:
    """Served models, and those that failed to load (``state: failed`` with the ``error``) or
    were unloaded."""
    runtime.require_ready()
    serving = runtime.models.serving()
    out = []
    for name, st in runtime.models.table().items():
        if name in serving:
            out.append(model_info(serving[name], st.state.value, settings, runtime))
            continue
        failed = st.state is ModelState.FAILED
        out.append(
            ModelInfo(
                name=name, state=st.state.value, error=st.detail if failed else None, ready=False
            )
        )
    return ModelListResponse(models=sorted(out, key=lambda i: i.name))


@router.get(
    "/{name}", response_model=ModelInfo, summary="One model", responses=error_responses(404, 503)
)
async def get_model(
    runtime: RuntimeDep,
    settings: SettingsDep,
    name: str = Path(description="model name", examples=[NAME_EXAMPLE]),
    version: str | None = params.VERSION.query(),
) -> ModelInfo:
    return model_info(runtime.get(name, version), settings=settings, runtime=runtime)
