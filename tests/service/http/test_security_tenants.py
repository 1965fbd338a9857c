"""Two tenants and an admin on one real server (``framecast serve`` as its own process, HTTP and
gRPC, a keys file of three keys): every attempt of one tenant on the other's streams and V2
sequences answered 404, listings disjoint, the same sequence_id kept apart, the repository
refused to tenants (403) and allowed to the admin, a key's stream limit (429), gRPC's status
codes, a ticketed WebSocket working and a URL key refused, a typed gRPC tensor far past the
limits refused at once with the server's memory flat, a key removed from the file refused within
10 s with no restart, and no secret in any line the server wrote."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from tests.service.conftest import CARRY
from tests.service.helpers import FRAMES, H, W
from tests.service.live import rss_mb, served_process

websockets_sync = pytest.importorskip("websockets.sync.client")

SECRETS = {
    "alice": "fc_alice-sekrit-0d1e6c4f9a7b",
    "bob": "fc_bob-sekrit-77f2a01c3e58",
    "root": "fc_root-sekrit-5b90ce2d4f11",
}
SCOPES = {"alice": '["infer", "stream"]', "bob": '["infer", "stream"]', "root": '["admin"]'}
LIMITS = {"alice": "max_streams = 3\n", "bob": "", "root": ""}
MAX_ITEMS = 100_000  # FRAMECAST_MAX_JSON_ITEMS of this server


def keys_text(ids) -> str:
    out = ""
    for kid in ids:
        digest = hashlib.sha256(SECRETS[kid].encode()).hexdigest()
        out += f'[[keys]]\nid = "{kid}"\nsha256 = "{digest}"\nscopes = {SCOPES[kid]}\n'
        out += LIMITS[kid] + "\n"
    return out


def auth(kid: str) -> dict:
    return {"authorization": f"Bearer {SECRETS[kid]}"}


@pytest.fixture(scope="module")
def server(stream_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tenants")
    keys = tmp / "keys.toml"
    keys.write_text(keys_text(["alice", "bob", "root"]))
    log = tmp / "server.log"
    env = {
        "FRAMECAST_API_KEYS_FILE": str(keys),
        "FRAMECAST_MAX_JSON_ITEMS": str(MAX_ITEMS),
        "FRAMECAST_STREAM_WINDOW": "5",
    }
    with served_process(stream_models, log, env, grpc=True) as (url, gaddr, proc):
        with httpx.Client(base_url=url, timeout=60) as http:
            channel = grpc.insecure_channel(gaddr)
            yield {
                "url": url,
                "http": http,
                "grpc": pbg.GRPCInferenceServiceStub(channel),
                "channel": channel,
                "proc": proc,
                "keys": keys,
                "log": log,
                "tickets": [],
            }
            channel.close()


def frames_npy(n: int = 1, seed: int = 0) -> bytes:
    import io

    a = np.random.default_rng(seed).integers(0, 256, (n, H, W, 1), dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def open_stream(http, kid: str) -> str:
    r = http.post(f"/v1/models/{CARRY}/streams", headers=auth(kid))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_one_tenant_never_reaches_the_others_streams(server):
    http = server["http"]
    a = open_stream(http, "alice")
    b = open_stream(http, "bob")
    npy = {"content-type": "application/x-npy"}
    r = http.post(f"/v1/streams/{a}/frames", content=frames_npy(), headers={**auth("alice"), **npy})
    assert r.status_code == 200 and r.json()["step"] == 1
    unknown = http.get("/v1/streams/no-such-stream", headers=auth("bob")).json()
    attempts = [
        ("GET", f"/v1/streams/{a}", {}),
        ("GET", f"/v1/streams/{a}/snapshot", {}),
        ("POST", f"/v1/streams/{a}/frames", {"content": frames_npy(), "headers": npy}),
        ("POST", f"/v1/streams/{a}/ticket", {}),
        ("DELETE", f"/v1/streams/{a}", {}),
    ]
    for method, path, kw in attempts:
        headers = {**auth("bob"), **kw.pop("headers", {})}
        r = http.request(method, path, headers=headers, **kw)
        assert r.status_code == 404, (method, path, r.text)  # not 403: existence not revealed
        assert r.json()["message"] == unknown["message"].replace("'no-such-stream'", repr(a))
    mine = {s["id"] for s in http.get("/v1/streams", headers=auth("alice")).json()["streams"]}
    theirs = {s["id"] for s in http.get("/v1/streams", headers=auth("bob")).json()["streams"]}
    every = {s["id"] for s in http.get("/v1/streams", headers=auth("root")).json()["streams"]}
    assert a in mine and b in theirs and not mine & theirs and {a, b} <= every
    assert http.get(f"/v1/streams/{a}", headers=auth("alice")).json()["step"] == 1  # untouched
    assert http.get(f"/v1/streams/{a}", headers=auth("root")).status_code == 200  # the admin
    assert http.delete(f"/v1/streams/{b}", headers=auth("root")).status_code == 200
    r = http.get(f"/v1/streams/{b}", headers=auth("bob"))
    assert r.status_code == 410 and "deleted" in r.json()["message"]  # its owner learns why
    assert http.get(f"/v1/streams/{b}", headers=auth("alice")).status_code == 404
    assert http.delete(f"/v1/streams/{a}", headers=auth("alice")).status_code == 200


def test_a_ticketed_websocket_works_and_a_url_key_is_refused(server):
    http, ws_url = server["http"], server["url"].replace("http://", "ws://")
    sid = open_stream(http, "alice")
    assert http.post(f"/v1/streams/{sid}/ticket", headers=auth("bob")).status_code == 404
    t = http.post(f"/v1/streams/{sid}/ticket", headers=auth("alice"))
    assert t.status_code == 200 and t.headers["cache-control"] == "no-store", t.text
    ticket = t.json()["ticket"]
    server["tickets"].append(ticket)
    frame = np.zeros((H, W, 1), np.uint8).tobytes()
    other = open_stream(http, "alice")  # shown on another stream: refused, and not used up
    with pytest.raises(Exception) as e:
        with websockets_sync.connect(f"{ws_url}/v1/streams/{other}/ws?ticket={ticket}") as ws:
            ws.recv(timeout=10)
    assert getattr(getattr(e.value, "response", None), "status_code", None) == 403, e.value
    assert http.delete(f"/v1/streams/{other}", headers=auth("alice")).status_code == 200
    with websockets_sync.connect(f"{ws_url}/v1/streams/{sid}/ws?ticket={ticket}") as ws:
        ws.send(frame)
        assert json.loads(ws.recv(timeout=30))["step"] == 1
    for query in (f"ticket={ticket}", f"api_key={SECRETS['alice']}", ""):  # used; in the URL
        with pytest.raises(Exception) as e:
            with websockets_sync.connect(f"{ws_url}/v1/streams/{sid}/ws?{query}") as ws:
                ws.recv(timeout=10)
        assert getattr(getattr(e.value, "response", None), "status_code", None) == 403, e.value
    headers = auth("alice")  # a program may send the header, not the key in its URL as well
    with pytest.raises(Exception) as e:
        url = f"{ws_url}/v1/streams/{sid}/ws?api_key={SECRETS['alice']}"
        with websockets_sync.connect(url, additional_headers=headers) as ws:
            ws.recv(timeout=10)
    assert getattr(getattr(e.value, "response", None), "status_code", None) == 403, e.value
    with websockets_sync.connect(f"{ws_url}/v1/streams/{sid}/ws", additional_headers=headers) as ws:
        ws.send(frame)
        assert json.loads(ws.recv(timeout=30))["step"] == 2
    deadline = time.monotonic() + 10
    while "POST /v1/streams/{id}/ticket" not in server["log"].read_text():  # why, in the log
        assert time.monotonic() < deadline
        time.sleep(0.1)


def v2_step(http, kid: str, seq, start: bool, seed: int) -> httpx.Response:
    data = np.random.default_rng(seed).random((1, 1, H, W, 1), dtype=np.float32)
    body = {
        "inputs": [{"name": "frames", "shape": list(data.shape), "datatype": "FP32",
                    "data": data.ravel().tolist()}],
        "parameters": {"sequence_id": seq, "sequence_start": start},
    }  # fmt: skip
    return http.post(f"/v2/models/{CARRY}/infer", json=body, headers=auth(kid))


def grpc_step(stub, kid: str, seq: int, start: bool, seed: int):
    data = np.random.default_rng(seed).random((1, 1, H, W, 1), dtype=np.float32)
    req = pb.ModelInferRequest(model_name=CARRY)
    t = req.inputs.add(name="frames", datatype="FP32", shape=list(data.shape))
    req.raw_input_contents.append(data.tobytes())
    assert t.name == "frames"
    req.parameters["sequence_id"].int64_param = seq
    req.parameters["sequence_start"].bool_param = start
    return stub.ModelInfer(req, metadata=[("authorization", f"Bearer {SECRETS[kid]}")], timeout=60)


def test_the_same_sequence_id_is_two_sequences_over_http_and_grpc(server):
    http, stub = server["http"], server["grpc"]
    for kid, seed in (("alice", 1), ("bob", 2)):
        r = v2_step(http, kid, 11, True, seed)
        assert r.status_code == 200 and r.json()["parameters"]["sequence_step"] == 1, r.text
    r = v2_step(http, "bob", 11, False, 3)
    assert r.json()["parameters"]["sequence_step"] == 2  # bob's own, not alice's
    assert v2_step(http, "alice", 11, False, 4).json()["parameters"]["sequence_step"] == 2
    for kid in ("alice", "bob"):  # each reachable by its owner under /v1/streams/{id}
        sid = f"v2:{CARRY}:11@{kid}"
        assert http.get(f"/v1/streams/{sid}", headers=auth(kid)).json()["step"] == 2
        other = "bob" if kid == "alice" else "alice"
        assert http.get(f"/v1/streams/{sid}", headers=auth(other)).status_code == 404
    got = grpc_step(stub, "alice", 12, True, 5)
    assert got.parameters["sequence_step"].int64_param == 1
    got = grpc_step(stub, "bob", 12, True, 6)
    got = grpc_step(stub, "bob", 12, False, 7)
    assert got.parameters["sequence_step"].int64_param == 2
    assert grpc_step(stub, "alice", 12, False, 8).parameters["sequence_step"].int64_param == 2
    r = http.get(f"/v1/streams/v2:{CARRY}:12@bob", headers=auth("alice"))
    assert r.status_code == 404
    for kid in ("alice", "bob"):
        for seq in (11, 12):
            http.delete(f"/v1/streams/v2:{CARRY}:{seq}@{kid}", headers=auth(kid))


def test_a_keys_stream_limit_is_429_over_v1_v2_and_grpc(server):
    http, stub = server["http"], server["grpc"]
    for s in http.get("/v1/streams", headers=auth("alice")).json()["streams"]:
        http.delete(f"/v1/streams/{s['id']}", headers=auth("alice"))  # from the tests above
    held = [open_stream(http, "alice") for _ in range(3)]  # alice: max_streams = 3
    r = http.post(f"/v1/models/{CARRY}/streams", headers=auth("alice"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "max_streams=3" in r.json()["message"]
    r = v2_step(http, "alice", 21, True, 0)
    assert r.status_code == 429 and set(r.json()) == {"error"}  # V2's body on /v2
    assert "max_streams=3" in r.json()["error"] and r.headers["retry-after"]
    with pytest.raises(grpc.RpcError) as e:
        grpc_step(stub, "alice", 22, True, 0)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams=3" in e.value.details()
    assert open_stream(http, "bob")  # another key's room is its own
    for sid in held:
        http.delete(f"/v1/streams/{sid}", headers=auth("alice"))
    assert open_stream(http, "alice")


def test_management_is_the_admins(server):
    http, stub = server["http"], server["grpc"]
    for path, kw in (
        (f"/v2/repository/models/{CARRY}/unload", {}),
        (f"/v2/repository/models/{CARRY}/load", {}),
        ("/v2/repository/index", {}),
    ):
        r = http.post(path, headers=auth("bob"), **kw)
        assert r.status_code == 403 and set(r.json()) == {"error"}, r.text
        assert "admin" in r.json()["error"]
    r = http.put(f"/v2/repository/models/{CARRY}/labels/stable", json={"version": 1},
                 headers=auth("alice"))  # fmt: skip
    assert r.status_code == 403
    meta = [("authorization", f"Bearer {SECRETS['bob']}")]
    for call, req in (
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=CARRY)),
        (stub.RepositoryIndex, pb.RepositoryIndexRequest()),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call(req, metadata=meta, timeout=30)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert http.get(f"/v2/models/{CARRY}/ready", headers=auth("bob")).status_code == 200
    r = http.put(f"/v2/repository/models/{CARRY}/labels/stable", json={"version": 1},
                 headers=auth("root"))  # fmt: skip
    assert r.status_code == 200, r.text
    rows = stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=[
        ("authorization", f"Bearer {SECRETS['root']}")], timeout=30)  # fmt: skip
    assert any(m.name == CARRY for m in rows.models)
    log = server["log"].read_text()
    assert "key 'root': set label model" in log and "stable -> version 1" in log


def test_grpc_answers_each_refusal_with_its_status(server):
    stub = server["grpc"]
    cases = (
        ([], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", "Bearer fc_not-a-key")], grpc.StatusCode.PERMISSION_DENIED),
    )
    for meta, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            stub.ServerLive(pb.ServerLiveRequest(), metadata=meta, timeout=30)
        assert e.value.code() == code, e.value
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"), metadata=[
            ("authorization", f"Bearer {SECRETS['bob']}")], timeout=30)  # fmt: skip
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def typed_request(values: int) -> bytes:
    """A ModelInferRequest whose one input carries ``values`` zeros as typed uint_contents,
    written straight as protobuf bytes (no client-side list of them)."""
    contents = _field(4, b"\0" * values)  # InferTensorContents.uint_contents, packed
    shape = b"".join(_varint(x) for x in (1, FRAMES, H, W, 1))
    tensor = _field(1, b"frames") + _field(2, b"UINT8") + _field(3, shape) + _field(5, contents)
    return _field(1, CARRY.encode()) + _field(5, tensor)


def test_a_typed_tensor_far_past_the_limits_is_refused_at_once_memory_flat(server):
    pid = server["proc"].pid
    call = server["channel"].unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=None,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    body = typed_request(200 * MAX_ITEMS)  # 20 M values: 200 times the limit
    before, peak, done = rss_mb(pid), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        call(body, metadata=[("authorization", f"Bearer {SECRETS['alice']}")], timeout=60)
    spent = time.monotonic() - t0
    done.set()
    sampler.join()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
    assert "FRAMECAST_MAX_JSON_ITEMS" in e.value.details()
    assert spent < 2.0, f"refused after {spent:.2f} s"
    assert peak[0] - before < 120, f"RSS {before:.0f} MB -> peak {peak[0]:.0f} MB"
    assert rss_mb(pid) - before < 60
    r = server["http"].get("/healthz")  # the server goes on
    assert r.status_code == 200


def test_a_key_removed_from_the_file_is_refused_within_10_s(server):
    from websockets.exceptions import ConnectionClosed

    http, stub = server["http"], server["grpc"]
    assert http.get("/v1/models", headers=auth("bob")).status_code == 200
    sid, frame = open_stream(http, "bob"), np.zeros((H, W, 1), np.uint8).tobytes()
    ws_url = server["url"].replace("http://", "ws://") + f"/v1/streams/{sid}/ws"
    ws = websockets_sync.connect(ws_url, additional_headers=auth("bob"))  # open before removal
    ws.send(frame)
    assert json.loads(ws.recv(timeout=30))["step"] == 1
    new = server["keys"].with_suffix(".new")
    new.write_text(keys_text(["alice", "root"]))
    new.replace(server["keys"])  # no restart, no signal
    deadline = time.monotonic() + 10
    while http.get("/v1/models", headers=auth("bob")).status_code != 403:
        assert time.monotonic() < deadline, "bob's key was still accepted 10 s after removal"
        time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as e:
        stub.ServerLive(pb.ServerLiveRequest(), metadata=[
            ("authorization", f"Bearer {SECRETS['bob']}")], timeout=30)  # fmt: skip
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert http.get("/v1/models", headers=auth("alice")).status_code == 200  # the others go on
    answers = []  # the socket bob opened before is closed too (4401), no frame of his stepped
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.send(frame)
            answers.append(json.loads(ws.recv(timeout=15)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401, closed.value
    assert all(a.get("error") == "unauthorized" for a in answers), answers
    ws.close()


def test_no_secret_in_any_line_the_server_wrote(server):
    server["http"].get("/v1/models", headers={"authorization": "Bearer fc_a-wrong-sekrit"})
    time.sleep(0.5)  # the last lines flushed
    log = server["log"].read_text()
    assert "WebSocket" in log and "[accepted]" in log  # uvicorn's lines are there, redacted
    assert "refused" in log and "key 'bob'" in log  # the audit names keys by id
    for secret in [*SECRETS.values(), "fc_a-wrong-sekrit", *server["tickets"]]:
        assert secret not in log, f"a secret reached the log: {secret[:8]}…"
    metrics = server["http"].get("/metrics").text
    assert not any(s in metrics for s in SECRETS.values())
