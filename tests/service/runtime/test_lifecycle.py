"""The lifecycle (service/runtime/lifecycle.py): each model's state, the swap, unload and forget,
and the queries over what is served."""

from __future__ import annotations


def test_compare_pairing_is_a_registry_query(runtime):
    reg = runtime.models
    names = [r.name for r in reg.find(task="next_frame")]
    assert names == ["conv2d_lstm_next_frame", "convlstm2d_next_frame"]
    assert [r.name for r in reg.find(architecture="convlstm2d", task="classify")] == [
        "convlstm2d_classify"
    ]
    pair = reg.pair("classify", {"conv2d_lstm": None, "convlstm2d": None})
    assert {k: v.name for k, v in pair.items()} == {
        "conv2d_lstm": "conv2d_lstm_classify",
        "convlstm2d": "convlstm2d_classify",
    }


def test_lifecycle_unload_takes_the_runner_out_and_forget_drops_it(models_dir):
    """Lifecycle.unload: the model is gone from lookups (and says it is unloaded); once its
    runner is closed its worker refuses new work; forget drops it from the table."""
    from service.config import Settings
    from service.errors import ModelNotFound, NotReady
    from service.runtime.devices import Placement
    from service.runtime.lifecycle import Lifecycle, ModelState
    from service.runtime.registry import discover_folders, load_folder
    from service.telemetry import Metrics

    folders = {f.name: f for f in discover_folders(models_dir)}
    reg = Lifecycle(Metrics())
    reg.loading("conv2d_lstm_classify")
    assert reg.status("conv2d_lstm_classify").state is ModelState.LOADING
    runner = load_folder(
        folders["conv2d_lstm_classify"],
        settings=Settings(models_dir=models_dir),
        placement=Placement("cpu:0", "cpu:0", "x"),
        metrics=Metrics(),
    )
    names = reg.names()  # what the log and metrics layers ask per request: never a copy
    assert not reg.knows("conv2d_lstm_classify") and "conv2d_lstm_classify" not in names
    reg.loaded(runner)
    try:
        reg.get("conv2d_lstm_classify")
        raise AssertionError("a model not warm yet is served")
    except NotReady:
        pass
    # warming: known as runners has it (the log names it, not "unknown")
    assert reg.knows("conv2d_lstm_classify") == ("conv2d_lstm_classify" in reg.runners) is True
    assert reg.serve(runner) is None and runner.ready
    assert reg.get("conv2d_lstm_classify") is runner
    assert "conv2d_lstm_classify" in names and "nope" not in names and 7 not in names
    try:
        reg.get("nope")
        raise AssertionError("an unknown model is found")
    except ModelNotFound as e:  # the served names come only with the error
        assert "loaded models: conv2d_lstm_classify" in str(e)
    assert reg.states() == {"conv2d_lstm_classify": "ready"}
    assert reg.unload("conv2d_lstm_classify") == [runner]  # every version it served
    runner.close()
    assert reg.find(task="classify") == [] and reg.states()["conv2d_lstm_classify"] == "unloaded"
    try:
        reg.get("conv2d_lstm_classify")
        raise AssertionError("an unloaded model is still found")
    except ModelNotFound as e:
        assert "unloaded" in str(e)
    assert reg.summary() == "0 model(s) ready; 1 unloaded: conv2d_lstm_classify"
    reg.forget("conv2d_lstm_classify")
    assert "conv2d_lstm_classify" not in reg.states()
    try:
        runner.submit(lambda: None)
        raise AssertionError("a closed runner took work")
    except NotReady as e:
        assert "shutting down" in str(e)


def test_every_state_change_is_one_line_and_a_new_detail_alone_is_none(models_dir, caplog):
    """loading → warming → ready (the ready line with its figures), a reload swapped in, an
    unload: one INFO line each; a detail that changes while the state stays (Ray's replica
    counts during a deployment) writes no line."""
    import logging

    from service.config import Settings
    from service.runtime.devices import Placement
    from service.runtime.lifecycle import Lifecycle
    from service.runtime.registry import discover_folders, load_folder
    from service.telemetry import Metrics

    folder = {f.name: f for f in discover_folders(models_dir)}["convlstm2d_classify"]
    name = folder.name

    def load():
        return load_folder(
            folder,
            settings=Settings(models_dir=models_dir),
            placement=Placement("cpu:0", "cpu:0", "x"),
            metrics=Metrics(),
        )

    reg = Lifecycle(Metrics())
    with caplog.at_level(logging.INFO, logger="framecast"):
        reg.loading(name, "replicas 0/2")
        reg.loading(name, "replicas 1/2")  # same state: no line
        first = load()
        reg.loaded(first)
        reg.warm(first)
        second = load()
        reg.loading(name)  # a reload while the first copy serves: still READY, no line
        reg.loaded(second)
        old = reg.warm(second)
        reg.unload(name)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"model {name}")]
    assert len(lines) == 5, lines
    assert lines[0] == f"model {name} loading: replicas 0/2"
    assert lines[1] == f"model {name} warming (was loading)"
    assert lines[2].startswith(f"model {name} ready: architecture=convlstm2d")
    assert "swapped in" not in lines[2]
    assert lines[3].startswith(f"model {name} ready: ") and lines[3].endswith(
        "swapped in for the previous copy"
    )
    assert lines[4] == f"model {name} unloaded"
    assert old is first
    for r in (first, second):
        r.close()
