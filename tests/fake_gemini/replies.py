"""What the fake answers: deterministic replies, token counts and embeddings for both dialects.

Token counts are words (whitespace-separated) so tests can predict them: the prompt count is the
words in every text part of the request (at least 1), the candidate count the words in the
reply. A function call counts the words of its JSON form.
"""

import functools
import hashlib
import json
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.fake_gemini.rules import signature_mint

THOUGHT_TEXT = "thinking..."
JSON_REPLY = '{"answer": "fake"}'
WEATHER_ARGS = {"city": "Paris"}
# Arguments of the second, third... call of a `parallel_calls` answer.
_PARALLEL_CITIES = ("London", "Tokyo", "Rome", "Oslo")
MALFORMED_MESSAGE = "Malformed function call: print(default_api.get_weather(city=Paris"
SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
]
_OPENAI_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


@dataclass(slots=True)
class Reply:
    """One planned answer, independent of the dialect it is rendered in."""

    prompt_tokens: int
    text: str | None = None
    function_calls: list[dict[str, Any]] = field(default_factory=list)
    thought: bool = False
    # Gemini's finishReason ("" for none at all); the OpenAI renderer maps it.
    finish: str = "STOP"
    empty: bool = False
    # Gemini 3's thoughtSignature: on the first function call, else on the last text part.
    signature: str | None = None

    @property
    def function_call(self) -> dict[str, Any] | None:
        return self.function_calls[0] if self.function_calls else None

    @property
    def candidate_tokens(self) -> int:
        if self.function_calls:
            return sum(words(json.dumps(call)) for call in self.function_calls)
        return words(self.text or "")

    @property
    def thought_tokens(self) -> int:
        return words(THOUGHT_TEXT) if self.thought else 0


def words(text: str) -> int:
    """Return the fake's token count for `text`: its whitespace-separated words."""
    return len(text.split())


def _dicts(value: Any) -> list[dict[str, Any]]:
    # Bodies come from the client under test: tolerate wrong shapes rather than crash with 500.
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _parts_words(content: Any) -> int:
    if not isinstance(content, dict):
        return 0
    return sum(
        words(part["text"])
        for part in _dicts(content.get("parts"))
        if isinstance(part.get("text"), str)
    )


def _parts_text(content: dict[str, Any]) -> str:
    return " ".join(
        part["text"] for part in _dicts(content.get("parts")) if isinstance(part.get("text"), str)
    )


def native_prompt_tokens(request: dict[str, Any]) -> int:
    """Return the prompt token count of a GenerateContentRequest (contents + systemInstruction)."""
    system = request.get("systemInstruction", request.get("system_instruction"))
    total = sum(_parts_words(c) for c in _dicts(request.get("contents"))) + _parts_words(system)
    return max(total, 1)


def _sentence(number: int, min_words: int) -> str:
    text = f"This is fake reply number {number}."
    # Streams need at least one word per chunk so the chunk count is what the test asked for.
    extra = [f"word{i}" for i in range(words(text) + 1, min_words + 1)]
    return " ".join([text, *extra])


def _truncate(reply: Reply, max_tokens: Any) -> Reply:
    if isinstance(max_tokens, int) and max_tokens > 0 and reply.text is not None:
        pieces = reply.text.split(" ")
        if len(pieces) > max_tokens:
            reply.text = " ".join(pieces[:max_tokens])
            reply.finish = "MAX_TOKENS"
    return reply


def _outcome(reply: Reply, outcome: str) -> Reply:
    if outcome == "empty":
        return Reply(prompt_tokens=reply.prompt_tokens, empty=True, finish="")
    if outcome == "safety":
        return Reply(prompt_tokens=reply.prompt_tokens, finish="SAFETY")
    if outcome == "malformed_function_call":
        # Google sends no content with this finish, only a finishMessage.
        return Reply(prompt_tokens=reply.prompt_tokens, finish="MALFORMED_FUNCTION_CALL")
    if outcome == "no_finish":
        reply.finish = ""
    if outcome == "thoughts_only":
        # Thought summaries and nothing else: Gemini's "the model said nothing" that looks busy.
        return Reply(prompt_tokens=reply.prompt_tokens, text="", thought=True)
    if outcome == "signature_only":
        # An empty text part carrying only a signature, as Gemini streams them on their own.
        return Reply(
            prompt_tokens=reply.prompt_tokens,
            text="",
            signature=reply.signature or signature_mint(backend="gemini-api"),
        )
    return reply


def _turn_start(contents: list[dict[str, Any]]) -> int:
    """Return where the current turn begins: after the last user content with text."""
    for index in range(len(contents) - 1, -1, -1):
        if contents[index].get("role", "user") == "user" and _parts_text(contents[index]):
            return index + 1
    return 0


def _calls(names: list[str], count: int, *, step: int = 0) -> list[dict[str, Any]]:
    """Return `count` calls, to the declared functions in turn, the first about Paris.

    Later steps of an agent loop add `step` to the arguments, so each step's calls differ.
    """
    first = dict(WEATHER_ARGS) if step == 0 else {**WEATHER_ARGS, "step": step}
    calls = [{"name": names[0], "args": first}]
    for index in range(1, count):
        city = _PARALLEL_CITIES[(index - 1) % len(_PARALLEL_CITIES)]
        calls.append({"name": names[index % len(names)], "args": {"city": city}})
    return calls


def native_reply(
    request: dict[str, Any],
    *,
    number: int,
    min_words: int,
    outcome: str,
    calls: int = 1,
    steps: int = 1,
    signature: str | None = None,
) -> Reply:
    """Return the answer to a GenerateContentRequest.

    A functionResponse in the last turn gets an acknowledgement naming the function; declared
    functions plus "weather" in the last user turn get `calls` calls, the first to the first
    function; JSON mode gets a JSON object; anything else the numbered sentence. `signature`
    (Gemini 3) signs the answer. With `steps` above 1 a functionResponse gets another call
    until the current turn holds `steps` function-call steps (an agent loop).
    """
    reply = Reply(prompt_tokens=native_prompt_tokens(request))
    contents = _dicts(request.get("contents"))
    config = request.get("generationConfig", request.get("generation_config"))
    config = config if isinstance(config, dict) else {}
    last = contents[-1] if contents else {}
    user_turns = [c for c in contents if c.get("role", "user") == "user"]
    responses = [
        r
        for p in _dicts(last.get("parts"))
        if isinstance(r := p.get("functionResponse", p.get("function_response")), dict)
    ]
    functions = _native_functions(request.get("tools"))
    user_text = [c for c in user_turns if _parts_text(c)]
    steps_done = sum(
        1
        for c in contents[_turn_start(contents) :]
        if c.get("role") == "model"
        and any("functionCall" in p or "function_call" in p for p in _dicts(c.get("parts")))
    )
    if responses and functions and steps_done < steps:
        reply.function_calls = _calls(functions, calls, step=steps_done)
    elif responses:
        reply.text = f"Result from {responses[0].get('name')} received."
    elif functions and user_text and "weather" in _parts_text(user_text[-1]).lower():
        reply.function_calls = _calls(functions, calls)
    elif config.get("responseMimeType", config.get("response_mime_type")) == "application/json":
        reply.text = JSON_REPLY
    else:
        reply.text = _sentence(number, min_words)
    thinking = config.get("thinkingConfig", config.get("thinking_config"))
    if isinstance(thinking, dict):
        reply.thought = bool(thinking.get("includeThoughts", thinking.get("include_thoughts")))
    reply = _truncate(reply, config.get("maxOutputTokens", config.get("max_output_tokens")))
    reply = _outcome(reply, outcome)
    if not reply.empty and (reply.text is not None or reply.function_calls):
        reply.signature = signature
    return reply


def _native_functions(tools: Any) -> list[str]:
    names = []
    for tool in _dicts(tools):
        declarations = tool.get("functionDeclarations", tool.get("function_declarations"))
        for declaration in _dicts(declarations):
            if isinstance(declaration.get("name"), str):
                names.append(declaration["name"])
    return names


def _native_usage(reply: Reply, *, final: bool = True) -> dict[str, Any]:
    prompt = reply.prompt_tokens
    if not final or reply.empty:
        # Google repeats the prompt count in every chunk; candidate counts come at the end.
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if reply.candidate_tokens:
        usage["candidatesTokenCount"] = reply.candidate_tokens
    usage["totalTokenCount"] = prompt + reply.candidate_tokens + reply.thought_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if reply.thought:
        usage["thoughtsTokenCount"] = reply.thought_tokens
    return usage


def _native_candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return candidate


def _native_parts(
    reply: Reply, text: str | None, *, first: bool = True, last: bool = True
) -> list[dict[str, Any]]:
    """Return the parts of one response (or of one stream chunk: `first`, `last`)."""
    parts: list[dict[str, Any]] = []
    if reply.thought and first:
        parts.append({"text": THOUGHT_TEXT, "thought": True})
    if reply.function_calls:
        for index, call in enumerate(reply.function_calls):
            part: dict[str, Any] = {"functionCall": call}
            # Gemini 3 signs only the first call of a step, even when calls come in parallel.
            if index == 0 and reply.signature:
                part["thoughtSignature"] = reply.signature
            parts.append(part)
    elif text is not None:
        part = {"text": text}
        if last and reply.signature:
            part["thoughtSignature"] = reply.signature
        parts.append(part)
    return parts


def native_response(reply: Reply, *, model: str, response_id: str) -> dict[str, Any]:
    """Return a complete GenerateContentResponse for `reply`."""
    if reply.empty:
        candidates: list[dict[str, Any]] = []
    elif reply.finish == "SAFETY":
        candidates = [{"finishReason": "SAFETY", "index": 0, "safetyRatings": SAFETY_RATINGS}]
    elif reply.finish == "MALFORMED_FUNCTION_CALL":
        candidates = [
            {"finishReason": reply.finish, "index": 0, "finishMessage": MALFORMED_MESSAGE}
        ]
    else:
        candidates = [_native_candidate(_native_parts(reply, reply.text), reply.finish)]
    return {
        "candidates": candidates,
        "usageMetadata": _native_usage(reply),
        "modelVersion": model,
        "responseId": response_id,
    }


def text_split(text: str, count: int) -> list[str]:
    """Return `text` cut at spaces into at most `count` pieces that join back to `text`."""
    pieces = text.split(" ")
    count = max(1, min(count, len(pieces)))
    size, extra = divmod(len(pieces), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(" ".join(pieces[start:end]) + (" " if end < len(pieces) else ""))
        start = end
    return out


def native_chunks(
    reply: Reply, *, model: str, response_id: str, count: int
) -> list[dict[str, Any]]:
    """Return the responses of a stream: text cut into `count` chunks, the last with usage."""
    if reply.text is None or reply.empty:
        return [native_response(reply, model=model, response_id=response_id)]
    pieces = text_split(reply.text, count)
    chunks = []
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        parts = _native_parts(reply, piece, first=i == 0, last=final)
        chunks.append(
            {
                "candidates": [_native_candidate(parts, reply.finish if final else None)],
                "usageMetadata": _native_usage(reply, final=final),
                "modelVersion": model,
                "responseId": response_id,
            }
        )
    return chunks


def _openai_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(
        part["text"]
        for part in _dicts(content)
        if part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def openai_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Return the prompt token count of a chat request: words in every message's text."""
    return max(sum(words(_openai_text(m.get("content"))) for m in messages), 1)


def openai_reply(
    body: dict[str, Any],
    *,
    number: int,
    min_words: int,
    outcome: str,
    calls: int = 1,
    steps: int = 1,
    signature: str | None = None,
) -> Reply:
    """Return the answer to an OpenAI chat request, by the same rules as `native_reply`."""
    messages = _dicts(body.get("messages"))
    reply = Reply(prompt_tokens=openai_prompt_tokens(messages))
    last = messages[-1] if messages else {}
    users = [m for m in messages if m.get("role") == "user"]
    functions = [
        t["function"]["name"]
        for t in _dicts(body.get("tools"))
        if isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
    ]
    response_format = body.get("response_format")
    start = max((i + 1 for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    steps_done = sum(
        1 for m in messages[start:] if m.get("role") == "assistant" and m.get("tool_calls")
    )
    if last.get("role") == "tool" and functions and steps_done < steps:
        reply.function_calls = _calls(functions, calls, step=steps_done)
    elif last.get("role") == "tool":
        reply.text = f"Result from {_openai_tool_name(messages, last)} received."
    elif functions and users and "weather" in _openai_text(users[-1].get("content")).lower():
        reply.function_calls = _calls(functions, calls)
    elif isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        reply.text = JSON_REPLY
    else:
        reply.text = _sentence(number, min_words)
    reply = _truncate(reply, body.get("max_completion_tokens", body.get("max_tokens")))
    reply = _outcome(reply, outcome)
    if reply.function_calls:
        reply.signature = signature
    return reply


def _openai_tool_name(messages: list[dict[str, Any]], tool_message: dict[str, Any]) -> str:
    if isinstance(name := tool_message.get("name"), str):
        return name
    call_id = tool_message.get("tool_call_id")
    for message in messages:
        for call in _dicts(message.get("tool_calls")):
            function = call.get("function")
            if call.get("id") == call_id and isinstance(function, dict):
                return str(function.get("name"))
    return str(call_id)


def _openai_usage(reply: Reply) -> dict[str, int]:
    completion = reply.candidate_tokens + reply.thought_tokens
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
    }


def _openai_finish(reply: Reply) -> str | None:
    if reply.empty or not reply.finish:
        return None
    if reply.function_calls:
        return "tool_calls"
    return _OPENAI_FINISH.get(reply.finish, "stop")


def _openai_tool_calls(reply: Reply, *, streaming: bool) -> list[dict[str, Any]]:
    out = []
    for index, function_call in enumerate(reply.function_calls):
        call: dict[str, Any] = {
            "id": f"call_{secrets.token_hex(8)}",
            "type": "function",
            "function": {
                "name": function_call["name"],
                "arguments": json.dumps(function_call["args"]),
            },
        }
        if index == 0 and reply.signature:
            # Where Google's OpenAI-compatible endpoint carries Gemini 3's signature.
            call["extra_content"] = {"google": {"thought_signature": reply.signature}}
        if streaming:
            call = {"index": index, **call}
        out.append(call)
    return out


def openai_completion(
    reply: Reply, *, model: str, completion_id: str, created: int
) -> dict[str, Any]:
    """Return a `chat.completion` object for `reply`."""
    message: dict[str, Any] = {"role": "assistant"}
    if reply.function_call is not None:
        message["content"] = None
        message["tool_calls"] = _openai_tool_calls(reply, streaming=False)
    else:
        message["content"] = reply.text or ""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _openai_finish(reply)}],
        "usage": _openai_usage(reply),
    }


def openai_chunks(
    reply: Reply, *, model: str, completion_id: str, created: int, count: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the `chat.completion.chunk` objects of a stream and the usage-only final chunk."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    if reply.function_call is not None:
        delta = {"role": "assistant", "tool_calls": _openai_tool_calls(reply, streaming=True)}
        chunks = [chunk(delta, "tool_calls")]
    elif reply.text is None:
        chunks = [chunk({"role": "assistant", "content": ""}, _openai_finish(reply))]
    else:
        pieces = text_split(reply.text, count)
        chunks = []
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunks.append(chunk(delta, _openai_finish(reply) if i == len(pieces) - 1 else None))
    usage = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": _openai_usage(reply),
    }
    return chunks, usage


@functools.lru_cache(maxsize=4096)
def embedding_values(text: str, dimensions: int) -> tuple[float, ...]:
    """Return a deterministic pseudo-embedding of `text` (same text, same vector)."""
    # Python's hash() is salted per process; a digest keeps vectors stable across runs.
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    return tuple(round(rng.uniform(-0.1, 0.1), 6) for _ in range(dimensions))


def native_embed_text(request: dict[str, Any]) -> str:
    """Return the text of an EmbedContentRequest's `content`."""
    content = request.get("content")
    return _parts_text(content) if isinstance(content, dict) else ""


def embedding_dimensions(value: Any) -> int:
    """Return the requested dimensionality, 768 when absent or not a positive integer."""
    return value if isinstance(value, int) and value > 0 else 768
