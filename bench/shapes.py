"""The request shapes the bench sends besides API-key chat: each dialect on each credential kind."""

import json
from dataclasses import dataclass

from bench.servers import CHAT_PATH, Target

MODEL = "gemini-2.5-flash"
# Measured at these scenarios only (see bench.run.SCENARIOS): enough to compare with chat.
SCENARIOS = ("c16", "stream16")


@dataclass(frozen=True)
class Dialect:
    """One client API: its route, its body and how its clients send the key."""

    name: str
    label: str
    path: str

    def body(self, *, stream: bool, model: str = MODEL) -> bytes:
        if self.name == "responses":
            document: dict[str, object] = {"model": model, "input": "hello", "stream": stream}
        elif self.name == "messages":
            document = {
                "model": model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hello"}],
                "stream": stream,
            }
        else:
            document = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
            if stream:
                document["stream"] = True
        return json.dumps(document, separators=(",", ":")).encode()

    def headers(self, authorization: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.name == "messages":
            # Anthropic's SDKs send the key bare in x-api-key, never as a bearer token.
            headers["x-api-key"] = authorization.removeprefix("Bearer ")
            headers["anthropic-version"] = "2023-06-01"
        else:
            headers["Authorization"] = authorization
        return headers


CHAT = Dialect("chat", "OpenAI chat completions", CHAT_PATH)
RESPONSES = Dialect("responses", "OpenAI Responses API", "/v1/responses")
MESSAGES = Dialect("messages", "Anthropic Messages", "/v1/messages")
KIND_LABELS = {"api_key": "API key (passthrough)", "oauth": "OAuth via Code Assist"}


@dataclass(frozen=True)
class Shape:
    """A dialect on one credential kind; its rows are named `<target> <dialect>/<kind>`."""

    dialect: Dialect
    kind: str  # "api_key" or "oauth"
    # Issue 11 requires this row; the others are skipped while their route answers 404.
    required: bool = False

    @property
    def key(self) -> str:
        return f"{self.dialect.name}/{self.kind}"

    @property
    def label(self) -> str:
        return f"{self.dialect.label}, {KIND_LABELS[self.kind]}"

    @property
    def baseline(self) -> str:
        """The shape this one is compared with: chat completions on the same credential kind,
        or, for chat on OAuth (the translated path), the API-key passthrough."""
        return "chat/api_key" if self.dialect is CHAT else f"chat/{self.kind}"

    @property
    def baseline_shape(self) -> "Shape | None":
        """The shape of `baseline`, or None for API-key chat (the target's own chat row)."""
        return None if self.baseline == "chat/api_key" else Shape(CHAT, self.kind)

    def row(self, target: Target) -> str:
        return f"{target.name} {self.key}"

    def authorization(self, target: Target) -> str:
        return target.oauth_authorization if self.kind == "oauth" else target.authorization

    def url(self, target: Target) -> str:
        return target.origin + self.dialect.path


# The API-key chat row is the target's own row (every scenario); these are the others.
SHAPES = (
    Shape(CHAT, "oauth", required=True),
    Shape(RESPONSES, "api_key"),
    Shape(RESPONSES, "oauth"),
    Shape(MESSAGES, "api_key"),
    Shape(MESSAGES, "oauth"),
)
