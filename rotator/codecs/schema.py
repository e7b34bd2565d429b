"""JSON Schema (what clients send for tools and structured output) as Gemini's JSON Schema
fields (parametersJsonSchema, responseJsonSchema) take it: one normaliser for every codec."""

from collections.abc import Mapping
from typing import Any

from rotator.codecs.base import CodecError

_SCHEMA_MAX_DEPTH = 64
# Bounds the work a hostile schema can cause.
_SCHEMA_MAX_NODES = 10_000


def _ref_name(ref: str) -> str | None:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix).replace("~1", "/").replace("~0", "~")
    return None


# --- JSON Schema for parametersJsonSchema / responseJsonSchema ------------------------------------

# Keys dropped everywhere: they say nothing to Gemini, and `$schema` URLs only add bytes.
_JSON_SCHEMA_DROPPED = frozenset({"$schema", "$comment"})
# Beside a `$ref`, Google accepts only these ("Schema.ref 'X' was set alongside unsupported
# fields. If a schema node has Schema.ref set, then only description and default can be set").
_REF_SIBLINGS = frozenset({"$ref", "description", "default"})


def json_schema_for_gemini(schema: Mapping[str, Any], *, param: str) -> dict[str, Any] | None:
    """Returns `schema` (a client's JSON Schema) as Gemini's JSON Schema fields take it, or
    None when it constrains nothing (an object without properties).

    What gemini-cli sends to both backends, and it keeps the client's property order. Only
    what Google refuses is changed: `definitions` become `$defs` (and their refs follow), a
    `$ref` keeps only the siblings Google allows, a `$ref` to nothing or outside the document
    becomes an unconstrained node, a property declared `true` / `false` becomes an object.
    Raises CodecError naming `param` for schemas nested or expanded beyond reason.
    """
    definitions: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            definitions.update(found)
    budget = [_SCHEMA_MAX_NODES]

    def walk(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > _SCHEMA_MAX_DEPTH or budget[0] < 0:
            raise CodecError("The JSON schema is nested too deeply.", param=param)
        if isinstance(node, list):
            return [walk(item, depth + 1) for item in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = _ref_name(ref)
            kept = {key: node[key] for key in _REF_SIBLINGS - {"$ref"} if key in node}
            if name is None or name not in definitions:
                return kept  # a reference Google cannot resolve constrains nothing it can check
            return {"$ref": f"#/$defs/{name}", **kept}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _JSON_SCHEMA_DROPPED or key == "definitions":
                continue
            if key in ("properties", "$defs", "patternProperties") and isinstance(value, Mapping):
                out[key] = {str(k): walk(_bool_schema(v), depth + 1) for k, v in value.items()}
            elif key in ("enum", "const", "default", "examples", "required", "type"):
                out[key] = value  # values, not schemas
            else:
                out[key] = walk(value, depth + 1)
        return out

    cleaned = walk(schema, 0)
    if definitions:
        cleaned["$defs"] = {str(k): walk(v, 1) for k, v in definitions.items()}
    if not isinstance(cleaned, dict):
        return None
    if (
        cleaned.get("type") == "object"
        and not cleaned.get("properties")
        and not cleaned.get("required")
        and set(cleaned) <= {"type", "properties", "required", "additionalProperties"}
    ):
        return None  # a function without parameters is declared without a schema
    return cleaned


def _bool_schema(value: Any) -> Any:
    """A boolean schema where a property's schema stands, as the object Gemini parses."""
    if isinstance(value, bool):
        return {} if value else {"not": {}}
    return value
