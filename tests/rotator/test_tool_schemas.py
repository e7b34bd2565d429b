"""Real-world MCP tool schemas reach a Google as strict as the real one, on both credential
kinds (issue 12): Rotator sends them as JSON Schema (parametersJsonSchema), never through the
classic `parameters` field that refuses arrays without items, untyped nodes and $refs."""

import anthropic
import openai
import pytest

from tests.conftest import persona_create
from tests.rotator.test_oauth import oauth_persona

SCHEMAS = {
    "filesystem edit_file (nested array of objects, additionalProperties)": {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "edits": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "oldText": {"type": "string", "description": "Text to search for"},
                        "newText": {"type": "string"},
                    },
                    "required": ["oldText", "newText"],
                    "additionalProperties": False,
                },
            },
            "dryRun": {"type": "boolean", "default": False},
        },
        "required": ["path", "edits"],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    },
    "git add (an array without items, an untyped value)": {
        "type": "object",
        "properties": {
            "repo_path": {"type": "string"},
            "files": {"type": "array"},
            "options": {},
        },
        "required": ["repo_path", "files"],
    },
    "browser click ($ref, $defs, anyOf with null, format)": {
        "type": "object",
        "properties": {
            "element": {"$ref": "#/$defs/Element", "description": "What to click"},
            "url": {"type": "string", "format": "uri"},
            "button": {"anyOf": [{"enum": ["left", "right"]}, {"type": "null"}]},
        },
        "required": ["element"],
        "$defs": {
            "Element": {
                "type": "object",
                "properties": {"ref": {"type": "string"}, "name": {"type": "string"}},
                "required": ["ref"],
            }
        },
    },
    "tree (recursive definitions, empty nested object)": {
        "type": "object",
        "properties": {"root": {"$ref": "#/definitions/Node"}, "meta": {"type": "object"}},
        "definitions": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}},
                },
            }
        },
    },
}
PARAMS = [pytest.param(schema, id=name) for name, schema in SCHEMAS.items()]
PROMPT = "weather in Paris?"  # the fake calls the first declared function for "weather"


@pytest.mark.parametrize("schema", PARAMS)
def test_an_mcp_schema_works_on_an_oauth_account_through_chat(live, fake_gemini, schema):
    persona = oauth_persona("mira", fake_gemini, project_id="p")
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)
    tool = {"type": "function", "function": {"name": "tool", "parameters": schema}}
    answer = client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": PROMPT}], tools=[tool]
    )
    assert answer.choices[0].message.tool_calls[0].function.name == "tool"
    [sent] = [r.body["request"] for r in fake_gemini.requests if r.model and r.body.get("request")]
    assert "parametersJsonSchema" in sent["tools"][0]["functionDeclarations"][0]


@pytest.mark.parametrize("schema", PARAMS)
def test_an_mcp_schema_works_on_an_api_key_through_messages(live, db, fake_gemini, schema):
    persona = persona_create("mick", credentials=1)
    client = anthropic.Anthropic(base_url=live, api_key=persona.key, max_retries=0)
    answer = client.messages.create(
        model="gemini-2.5-flash",
        max_tokens=256,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[{"name": "tool", "input_schema": schema}],
    )
    assert [block.name for block in answer.content if block.type == "tool_use"] == ["tool"]
