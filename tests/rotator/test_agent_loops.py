"""Agent loops on Gemini 3 through the openai SDK: thought signatures survive clients that
rewrite ids and drop unknown fields, on every credential kind and across them (issue 12)."""

import re
from typing import Any

import openai
import pytest

from tests.rotator.test_oauth import oauth_persona, refresh_tokens

G3 = "gemini-3-flash-preview"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _sanitised(message: Any) -> dict[str, Any]:
    """What many agents send back: only the fields they know, ids cut to 40 characters of
    [A-Za-z0-9_-] (Cline, Roo and others rewrite ids; extra_content is dropped)."""
    calls = [
        {
            "id": re.sub(r"[^A-Za-z0-9_-]", "_", call.id)[:40],
            "type": "function",
            "function": {"name": call.function.name, "arguments": call.function.arguments},
        }
        for call in message.tool_calls or []
    ]
    return {"role": "assistant", "content": message.content, "tool_calls": calls}


def _loop(client: openai.OpenAI, *, steps: int = 3) -> str:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris, 3 checks"}]
    for _ in range(steps):
        answer = client.chat.completions.create(model=G3, messages=messages, tools=TOOLS)
        message = answer.choices[0].message
        [call] = message.tool_calls
        assert len(call.id) <= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", call.id)
        messages += [
            _sanitised(message),
            {"role": "tool", "tool_call_id": call.id[:40], "content": "21C"},
        ]
    final = client.chat.completions.create(model=G3, messages=messages, tools=TOOLS)
    return final.choices[0].message.content or ""


def _pool(name: str, fake, *, accounts: int, api_keys: int):
    persona = oauth_persona(name, fake, accounts=accounts, api_keys=api_keys, project_id="p")
    for secret in [*persona.upstream_keys[:api_keys], *refresh_tokens(persona)]:
        fake.behave(secret, "tool_loop", steps=3)
    return persona


@pytest.mark.parametrize(
    ("accounts", "api_keys"),
    [(0, 2), (2, 0), (1, 1)],
    ids=["api-key pool", "oauth pool", "mixed pool, alternating"],
)
def test_a_three_step_agent_loop_on_gemini_3_completes(live, fake_gemini, accounts, api_keys):
    persona = _pool("agnes", fake_gemini, accounts=accounts, api_keys=api_keys)
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)
    assert _loop(client) == "Result from get_weather received."
    served = [r for r in fake_gemini.requests if r.model]
    assert all(r.status == 200 for r in served), [r.status for r in served]
    if accounts and api_keys:
        assert {r.dialect for r in served} == {"openai", "code_assist"}, "both kinds served"


def test_a_client_that_renames_ids_still_completes_with_the_skip_value(live, fake_gemini):
    persona = _pool("rena", fake_gemini, accounts=1, api_keys=1)
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    for step in range(3):
        message = client.chat.completions.create(model=G3, messages=messages, tools=TOOLS)
        renamed = _sanitised(message.choices[0].message)
        renamed["tool_calls"][0]["id"] = f"toolu_{step}"
        messages += [renamed, {"role": "tool", "tool_call_id": f"toolu_{step}", "content": "21"}]
    final = client.chat.completions.create(model=G3, messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "Result from get_weather received."
