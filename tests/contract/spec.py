"""Check requests and responses against the merged OpenAPI spec (a copy of
``../shared/wachat-api/openapi.yaml``; ``test_contract`` checks that the copy is current)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SPEC_PATH = Path(__file__).with_name("openapi.yaml")
SHARED_SPEC = Path(__file__).parents[3] / "shared" / "wachat-api" / "openapi.yaml"


@cache
def spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return data


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: ``nullable`` becomes a null type, refs are inlined."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _to_json_schema(copy.deepcopy(target))
    out = {k: _to_json_schema(v) for k, v in node.items() if not k.startswith("x-")}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "allOf" in out:
            out = {"anyOf": [{"type": "null"}, {"allOf": out.pop("allOf")}], **out}
    out.pop("example", None)
    out.pop("format", None)  # formats are not asserted by default; keep the check on shapes
    return out


def _operation(method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = spec()["paths"][path][method.lower()]
    return op


def request_schema(method: str, path: str) -> Any:
    body = _operation(method, path).get("requestBody")
    if body is None:
        return None
    return _to_json_schema(body["content"]["application/json"]["schema"])


def response_schema(method: str, path: str, status: int, content_type: str) -> Any:
    responses = _operation(method, path)["responses"]
    response = responses.get(str(status))
    if response is None:
        raise AssertionError(f"{method} {path}: status {status} is not in the spec")
    response = _to_json_schema(response)
    content = response.get("content")
    if content is None:
        return None  # documented status without a documented body
    if content_type not in content:
        raise AssertionError(f"{method} {path} {status}: {content_type} is not a documented type")
    return content[content_type].get("schema")


def validate(instance: Any, schema: Any, what: str) -> None:
    try:
        jsonschema.validate(instance, schema)
    except jsonschema.ValidationError as exc:
        raise AssertionError(
            f"{what} breaks the spec: {exc.message} at {list(exc.absolute_path)}"
        ) from None


def strategy(schema: Any) -> Any:
    """A hypothesis strategy for the JSON Schema subset the spec uses: schema-valid values with
    optional properties left out at random, nulls where nullable, and extra unknown keys."""
    from hypothesis import strategies as st

    if schema is None or schema == {}:
        return st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([strategy(s) for s in schema["anyOf"]])
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return strategy(merged)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([strategy({**schema, "type": k}) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=-(2**53), max_value=2**53)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers()
    if kind == "string":
        return st.text(max_size=20)
    if kind == "array":
        return st.lists(strategy(schema.get("items", {})), max_size=4)
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = {
        name: st.tuples(st.booleans() if name not in required else st.just(True), strategy(sub))
        for name, sub in properties.items()
    }

    def build(values: dict[str, tuple[bool, Any]], extra: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, (keep, v) in values.items() if keep}
        return {**extra, **out}

    extras = st.dictionaries(
        st.text(min_size=1, max_size=8), st.integers() | st.text(max_size=5), max_size=2
    )
    return st.builds(build, st.fixed_dictionaries(fields), extras)
