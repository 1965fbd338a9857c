"""A run's configuration (models/training/config.py): flags that contradict each other are one
TrainingError (a ValueError) that says which, before any data or Keras is loaded."""

import pytest

from models.training.config import DEFAULT_CONFIGS, TrainConfig, TrainingError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "classify", "rollout": 2}, "next_frame only"),
        ({"task": "classify", "forecast": True}, "next_frame only"),
        ({"rollout": 2, "forecast": True}, "exclude each other"),
        ({"rollout": 11}, "between 0 and 10"),
        ({"arch": "resnet"}, "--arch must be one of"),
    ],
)
def test_contradicting_flags_are_one_training_error(tmp_path, kwargs, message):
    cfg = TrainConfig(**{"arch": "convlstm2d", "task": "next_frame", "out": tmp_path, **kwargs})
    with pytest.raises(TrainingError, match=message) as e:
        cfg.check()
    assert isinstance(e.value, ValueError)


def test_builder_arguments_are_the_defaults_overridden_by_config(tmp_path):
    cfg = TrainConfig("convlstm2d", "next_frame", tmp_path, config={"filters": [8]})
    assert cfg.builder_kwargs() == {**DEFAULT_CONFIGS[("convlstm2d", "next_frame")], "filters": [8]}
    assert cfg.train_time_steps is None  # teacher forcing: any length
    assert TrainConfig("convlstm2d", "next_frame", tmp_path, rollout=3).train_time_steps == 10
    assert TrainConfig("conv2d_lstm", "classify", tmp_path).train_time_steps == 10
