"""OpenAPI at /docs and /openapi.json: every route documented with an example."""

from __future__ import annotations

import json


def test_every_route_has_an_example(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    paths = spec["paths"]
    expected = {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/classify",
        "/v1/compare/next-frame",
        "/v1/compare/classify",
    }
    assert expected <= set(paths)
    for path in expected:
        for method, op in paths[path].items():
            text = json.dumps(op)
            ok = '"example' in text
            # or the response schema it refers to carries examples
            for ref in {r.split("/")[-1] for r in _refs(op)}:
                ok = ok or "examples" in json.dumps(schemas.get(ref, {}))
            assert ok, f"{method.upper()} {path} has no example"
    for path in ("/v1/models/{name}/predict", "/v1/compare/next-frame"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json", "image/gif", "application/x-npy"} <= set(
            content
        )
        assert content["application/json"]["example"]["frames"]
    params = {p["name"] for p in paths["/v1/compare/next-frame"]["post"]["parameters"]}
    assert {"holdout", "horizon", "output", "resize"} <= params


def _refs(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _refs(v)


def test_the_v2_infer_body_is_described(client):
    """API tools generate a valid request from the document: inputs with name, shape, datatype
    and data, the requested outputs (binary_data, classification), the parameters."""
    op = client.get("/openapi.json").json()["paths"]["/v2/models/{name}/infer"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["inputs"]
    tensor = schema["properties"]["inputs"]["items"]
    assert set(tensor["required"]) == {"name", "shape", "datatype"}
    assert tensor["properties"]["datatype"]["enum"] == ["FP32", "UINT8"]
    output = schema["properties"]["outputs"]["items"]["properties"]["parameters"]["properties"]
    assert {"binary_data", "classification"} <= set(output)
    assert "horizon" in schema["properties"]["parameters"]["properties"]
    assert "application/octet-stream" in body["content"]
