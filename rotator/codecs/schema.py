"""JSON Schema (what clients send for tools and structured output) to the Schema Gemini's
classic fields accept: one cleaner for every codec."""

import json
from collections.abc import Mapping
from typing import Any

from rotator.codecs.base import CodecError

# Gemini's Schema is an OpenAPI subset and answers 400 on any field it does not know, so cleaning
# keeps a list of known fields rather than removing a list of known offenders. Fields needing more
# than a copy (type, enum, format, properties, required, items, anyOf) are handled one by one.
_SCHEMA_COPIED_KEYS = (
    "description",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
)
# Gemini rejects other formats, e.g. "format: only 'enum' and 'date-time' are supported for STRING".
_SCHEMA_FORMATS_BY_TYPE = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}
_SCHEMA_MAX_DEPTH = 64
# Inlining $refs can multiply a schema; this bounds the work a hostile schema can cause.
_SCHEMA_MAX_NODES = 10_000


# --- JSON schema -> Gemini Schema ----------------------------------------------------------------


def schema_to_gemini(schema: Mapping[str, Any], *, param: str) -> dict[str, Any] | None:
    """Return `schema` as a Gemini Schema, or None when it constrains nothing Gemini can express.

    Gemini answers 400 to an OBJECT whose properties are empty ("should be non-empty for OBJECT
    type"), so a parameter-less function is declared without parameters. Raises CodecError
    naming `param` for schemas nested or expanded beyond reason.
    """
    cleaned = _SchemaCleaner(schema, param=param).clean(schema, seen=frozenset(), depth=0)
    if "type" not in cleaned and cleaned.get("properties"):
        cleaned["type"] = "object"
    if cleaned.get("type") == "object" and not cleaned.get("properties"):
        return None
    return cleaned


class _SchemaCleaner:
    """One walk over a JSON schema: its definitions (for $ref) and a count of nodes visited."""

    def __init__(self, root: Mapping[str, Any], *, param: str) -> None:
        self.param = param
        self.nodes = 0
        self.definitions: dict[str, Any] = {}
        for key in ("definitions", "$defs"):
            found = root.get(key)
            if isinstance(found, Mapping):
                self.definitions.update(found)

    def clean(self, node: Any, *, seen: frozenset[str], depth: int) -> dict[str, Any]:
        self.nodes += 1
        if depth > _SCHEMA_MAX_DEPTH or self.nodes > _SCHEMA_MAX_NODES:
            raise CodecError("The JSON schema is nested too deeply.", param=self.param)
        if not isinstance(node, Mapping):
            return {}  # boolean schemas and junk constrain nothing Gemini can say

        def child(value: Any, *, via: str | None = None) -> dict[str, Any]:
            return self.clean(value, seen=seen if via is None else seen | {via}, depth=depth + 1)

        out: dict[str, Any] = {}
        ref = node.get("$ref")
        name = _ref_name(ref) if isinstance(ref, str) else None
        # Gemini has no $ref: a local definition is inlined; a recursive or foreign one is dropped.
        if name is not None and name in self.definitions and name not in seen:
            out.update(child(self.definitions[name], via=name))
        members = node.get("allOf")
        for member in members if isinstance(members, list) else []:
            _schema_merge(out, child(member))
        for key in _SCHEMA_COPIED_KEYS:
            if key in node:
                out[key] = node[key]
        nullable = node.get("nullable") is True

        declared = node.get("type")
        types = [declared] if isinstance(declared, str) else _list(declared)
        types = [item for item in types if isinstance(item, str)]
        nullable = nullable or "null" in types  # ["string", "null"] is OpenAPI's nullable string
        concrete = list(dict.fromkeys(item for item in types if item != "null"))
        if len(concrete) == 1:
            out["type"] = concrete[0]
        elif concrete:
            out["anyOf"] = [{"type": item} for item in concrete]

        # Gemini knows no oneOf; anyOf is the nearest it accepts.
        alternatives = [child(item) for key in ("anyOf", "oneOf") for item in _list(node.get(key))]
        if alternatives:
            non_null = [item for item in alternatives if item != {"nullable": True}]
            nullable = nullable or len(non_null) < len(alternatives)
            if len(non_null) == 1:
                _schema_merge(out, non_null[0])  # Optional[X] is X, nullable
            elif non_null:
                out["anyOf"] = non_null

        enum = node.get("enum")
        if not isinstance(enum, list) and "const" in node:
            enum = [node["const"]]
        if isinstance(enum, list):
            nullable = nullable or None in enum
            values = [item for item in enum if item is not None]
            if (
                all(isinstance(item, str) for item in values)
                and out.get("type", "string") == "string"
            ):
                if values:
                    out["type"] = "string"  # Gemini takes enum only on STRING, and wants it said
                    out["enum"] = values
            else:
                # Numbers and booleans cannot be a Gemini enum; keep the constraint in words.
                listed = ", ".join(json.dumps(item, default=str) for item in values)
                before = out.get("description")
                prefix = f"{before} " if isinstance(before, str) and before else ""
                out["description"] = f"{prefix}Allowed values: {listed}."

        schema_format = node.get("format")
        schema_type = out.get("type")
        allowed_formats = (
            _SCHEMA_FORMATS_BY_TYPE.get(schema_type, frozenset())
            if isinstance(schema_type, str)
            else frozenset()
        )
        if isinstance(schema_format, str) and schema_format in allowed_formats:
            out["format"] = schema_format

        properties = node.get("properties")
        if isinstance(properties, Mapping):
            merged = out.setdefault("properties", {})
            for key, value in properties.items():
                merged[str(key)] = child(value)
        required = [item for item in _list(node.get("required")) if isinstance(item, str)]
        if required or "required" in out:
            # Gemini rejects required names that are not properties.
            known = out.get("properties", {})
            united = dict.fromkeys([*out.get("required", []), *required])
            out["required"] = [key for key in united if key in known]
            if not out["required"]:
                del out["required"]
        items = node.get("items")
        if isinstance(items, Mapping):
            out["items"] = child(items)
        if nullable:
            out["nullable"] = True
        return out


def _schema_merge(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Fold `source` into `target`: properties and required are united, other keys fill gaps."""
    for key, value in source.items():
        if key == "properties":
            target.setdefault("properties", {}).update(value)
        elif key == "required":
            target["required"] = list(dict.fromkeys([*target.get("required", []), *value]))
        else:
            target.setdefault(key, value)


def _ref_name(ref: str) -> str | None:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix).replace("~1", "/").replace("~0", "~")
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
