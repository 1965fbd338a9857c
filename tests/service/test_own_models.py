"""Users' own checkpoints, alone in their folders (no manifest), served as the models compute.

Every answer is checked against the model's own eager call on the same clip (``model(x)``, not
``predict_on_batch``, whose traced function can go wrong when the time length changes).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.media.fitting import to_channels
from tests.service import own_models as om
from tests.service.helpers import npy

S, T = om.S, om.T


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Folders holding only a checkpoint, plus one broken file beside them."""
    root = tmp_path_factory.mktemp("own_models")
    made = {
        "c2l_rgb": om.conv2d_lstm_binary(3),
        "clstm_rgb": om.convlstm2d_binary(3),
        "c2l_free": om.conv2d_lstm_binary(1, frames=None),
        "example_nf": om.keras_example_next_frame(1),
        "steppable_nf": om.free_sequence_next_frame(1),
        "many_to_one": om.many_to_one_next_frame(3),
    }
    for name, model in made.items():
        om.write_folder(root, name, model)
    made["softmax_h5"] = om.convlstm2d_softmax(3, 1)
    om.write_folder(root, "softmax_h5", made["softmax_h5"], suffix=".h5")
    (root / "broken").mkdir()
    (root / "broken" / "model.keras").write_bytes(b"PK\x03\x04 this is not a keras file")
    return root, made


@pytest.fixture(scope="module")
def client(own):
    root, _ = own
    settings = Settings(models_dir=root, load_mode="blocking", max_horizon=5, max_frames=32)
    with TestClient(create_app(settings)) as c:
        yield c


def clip(t: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((t, S, S, c), dtype=np.float32)


def eager(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x[None], training=False))[0]


def post(client, path: str, frames: np.ndarray, /, **params):
    return client.post(
        path,
        params=params,
        content=npy(frames),
        headers={"content-type": "application/x-npy"},
    )


def scores_of(body: dict) -> dict[str, float]:
    return {s["class_name"]: s["score"] for s in body["scores"]}


def test_models_listed_with_what_was_read_and_broken_one_failed(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    info = {m["name"]: m for m in r.json()["models"]}
    assert info["c2l_rgb"]["architecture"] == "conv2d_lstm"
    assert info["c2l_rgb"]["task"] == "classify"
    assert info["c2l_rgb"]["class_names"] == ["negative", "positive"]
    assert info["c2l_rgb"]["input"] == {
        "frames": T,
        "height": S,
        "width": S,
        "channels": 3,
        "context": None,
    }
    assert info["clstm_rgb"]["architecture"] == "convlstm2d"
    assert info["softmax_h5"]["class_names"] == ["class_0", "class_1", "class_2"]
    assert info["c2l_free"]["input"]["frames"] is None
    assert info["example_nf"]["task"] == "next_frame"
    assert info["example_nf"]["rollout"] == "growing"  # Conv3D head: no carried state
    assert info["steppable_nf"]["rollout"] == "carried_state"
    assert info["many_to_one"]["output"] == "frame"
    assert info["many_to_one"]["rollout"] == "sliding_window"
    assert info["broken"]["state"] == "failed"
    assert "broken" in info["broken"]["error"] and "safe mode" in info["broken"]["error"]
    assert client.get("/readyz").status_code == 200
    assert client.get("/v2/models/broken/ready").status_code == 400
    assert client.get("/v2/models/c2l_rgb/ready").status_code == 200
    r = client.post("/v1/models/broken/classify", content=npy(clip(T, 1)))
    assert r.status_code == 503 and "failed" in r.json()["message"]


@pytest.mark.parametrize("name", ["c2l_rgb", "clstm_rgb"])
def test_sigmoid_head_answers_its_probability_and_complement(client, own, name):
    _, made = own
    x = clip(T, 3, seed=1)
    r = post(client, f"/v1/models/{name}/classify", x)
    assert r.status_code == 200, r.text
    p = float(eager(made[name], x)[0])
    got = scores_of(r.json())
    assert abs(got["positive"] - p) < 1e-4
    assert abs(got["negative"] - (1.0 - p)) < 1e-4


def test_grey_upload_to_rgb_model_is_converted(client, own):
    _, made = own
    grey = clip(T, 1, seed=2)
    r = post(client, "/v1/models/c2l_rgb/classify", grey)
    assert r.status_code == 200, r.text
    p = float(eager(made["c2l_rgb"], to_channels(grey, 3))[0])
    assert abs(scores_of(r.json())["positive"] - p) < 1e-4


def test_softmax_h5_scores(client, own):
    _, made = own
    x = clip(T + 3, 1, seed=3)  # more frames than the model takes: the last T are read
    r = post(client, "/v1/models/softmax_h5/classify", x)
    assert r.status_code == 200, r.text
    want = eager(made["softmax_h5"], x[-T:])
    got = scores_of(r.json())
    assert np.allclose([got[f"class_{i}"] for i in range(3)], want, atol=1e-4)
    assert r.json()["context_frames"] == T


def test_free_time_axis_reads_every_frame_at_any_length(client, own):
    _, made = own
    for t in (5, 9, 5, 3):  # lengths change between calls: each one still exact
        x = clip(t, 1, seed=t)
        r = post(client, "/v1/models/c2l_free/classify", x)
        assert r.status_code == 200, r.text
        assert r.json()["context_frames"] == t
        p = float(eager(made["c2l_free"], x)[0])
        assert abs(scores_of(r.json())["positive"] - p) < 1e-4


def growing(model, x: np.ndarray, k: int) -> np.ndarray:
    seq, out = x, []
    for _ in range(k):
        nxt = eager(model, seq)[-1]
        out.append(nxt)
        seq = np.concatenate([seq, nxt[None]])
    return np.stack(out)


def sliding(model, x: np.ndarray, k: int, many_to_one: bool) -> np.ndarray:
    win, out = x[-T:], []
    for _ in range(k):
        y = eager(model, win)
        nxt = y if many_to_one else y[-1]
        out.append(nxt)
        win = np.concatenate([win[1:], nxt[None]])
    return np.stack(out)


def predicted(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


@pytest.mark.parametrize("name", ["example_nf", "steppable_nf"])
def test_free_time_next_frame_rolls_out_as_the_sequence_grows(client, own, name):
    _, made = own
    x = clip(5, 1, seed=4)
    got = predicted(post(client, f"/v1/models/{name}/predict", x, horizon=3, output="npy"))
    assert got.shape == (3, S, S, 1)
    assert np.allclose(got, growing(made[name], x, 3), atol=1e-4)


def test_many_to_one_rgb_rolls_out_in_a_sliding_window(client, own):
    _, made = own
    x = clip(T, 3, seed=5)
    got = predicted(post(client, "/v1/models/many_to_one/predict", x, horizon=3, output="npy"))
    assert got.shape == (3, S, S, 3)
    assert np.allclose(got, sliding(made["many_to_one"], x, 3, True), atol=1e-4)
    png = post(client, "/v1/models/many_to_one/predict", x, output="png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_compare_any_classifiers_each_with_its_labels(client, own):
    _, made = own
    x = clip(T, 3, seed=6)
    r = post(
        client,
        "/v1/compare/classify",
        x,
        models="c2l_rgb,clstm_rgb,softmax_h5",
        label="positive",
    )
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert set(res) == {"c2l_rgb", "clstm_rgb", "softmax_h5"}
    for name in ("c2l_rgb", "clstm_rgb"):
        p = float(eager(made[name], x)[0])
        assert abs(res[name]["true_class_score"] - p) < 1e-4
    assert res["softmax_h5"]["class_names"] == ["class_0", "class_1", "class_2"]
    assert res["softmax_h5"]["true_class_score"] is None  # not one of its classes
    want = eager(made["softmax_h5"], to_channels(x, 1))
    got = {s["class_name"]: s["score"] for s in res["softmax_h5"]["scores"]}
    assert np.allclose([got[f"class_{i}"] for i in range(3)], want[: len(got)], atol=1e-4)
    best = max(("c2l_rgb", "clstm_rgb"), key=lambda n: res[n]["true_class_score"])
    assert r.json()["winner"] == best


def test_compare_any_next_frame_models_with_truth(client, own):
    _, made = own
    x = clip(T + 2, 1, seed=7)
    r = post(client, "/v1/compare/next-frame", x, models="example_nf,steppable_nf", holdout=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["results"]) == {"example_nf", "steppable_nf"}
    assert body["winner"] in {"example_nf", "steppable_nf", "tie"}
    for name in ("example_nf", "steppable_nf"):
        assert body["results"][name]["context_frames"] == T
        assert body["results"][name]["metrics"]["mse_per_frame"] >= 0


def test_compare_one_model_gives_its_output_and_errors_alone(client, own):
    """models=<one name>: that model's frames and errors against the truth, equal to what it
    scores beside another model, and no winner (nothing to win against)."""
    x = clip(T + 2, 1, seed=8)
    path = "/v1/compare/next-frame"
    one = post(client, path, x, models="example_nf", holdout=2, frames=True)
    two = post(client, path, x, models="example_nf,steppable_nf", holdout=2, frames=True)
    assert one.status_code == 200 and two.status_code == 200, one.text
    a, b = one.json(), two.json()
    assert set(a["results"]) == {"example_nf"} and a["winner"] is None and a["winners"] == {}
    assert a["truth"] == "holdout" and len(a["results"]["example_nf"]["frames"]) == 2
    assert a["results"]["example_nf"]["metrics"]["mse_per_frame"] == pytest.approx(
        b["results"]["example_nf"]["metrics"]["mse_per_frame"], rel=1e-5
    )
    r = post(client, "/v1/compare/classify", x[:T], models="c2l_rgb", label="positive")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["results"]) == {"c2l_rgb"} and body["winner"] is None
    assert body["results"]["c2l_rgb"]["true_class_score"] is not None


def test_compare_models_must_share_the_task(client):
    x = clip(T, 1)
    r = post(client, "/v1/compare/classify", x, models="c2l_rgb,example_nf")
    assert r.status_code == 422 and "next_frame" in r.json()["message"]
    r = post(client, "/v1/compare/classify", x, models="c2l_rgb,c2l_rgb")
    assert r.status_code == 422 and "one or more different" in r.json()["message"]
    r = post(client, "/v1/compare/classify", x, models=" , ")
    assert r.status_code == 422 and "one or more different" in r.json()["message"]
    r = post(client, "/v1/compare/classify", x, models="c2l_rgb,nope")
    assert r.status_code == 404


def test_user_manifest_names_classes_and_context(tmp_path):
    om.write_folder(tmp_path, "named", om.conv2d_lstm_binary(1, frames=None))
    (tmp_path / "named" / "manifest.json").write_text(
        json.dumps({"class_names": ["calm", "storm"], "context": 4, "display_name": "Weather"})
    )
    settings = Settings(models_dir=tmp_path, load_mode="blocking")
    with TestClient(create_app(settings)) as c:
        info = c.get("/v1/models/named").json()
        assert info["class_names"] == ["calm", "storm"]
        assert info["input"]["context"] == 4 and info["display_name"] == "Weather"
        r = post(c, "/v1/models/named/classify", clip(7, 1))
        assert r.status_code == 200 and r.json()["context_frames"] == 4
        assert set(scores_of(r.json())) == {"calm", "storm"}


def test_strict_load_makes_a_broken_model_fatal(own):
    from service.errors import LoadError

    root, _ = own
    settings = Settings(models_dir=root, load_mode="blocking", strict_load=True)
    with pytest.raises(LoadError, match="broken"):
        with TestClient(create_app(settings)):
            pass
