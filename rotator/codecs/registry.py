"""The codec of each dialect, by name: the one place a new dialect is registered."""

from types import ModuleType

from rotator.codecs import anthropic_messages, gemini_native, openai_chat, openai_responses

CODECS: dict[str, ModuleType] = {
    codec.NAME: codec
    for codec in (openai_chat, gemini_native, openai_responses, anthropic_messages)
}


def codec_of(name: str) -> ModuleType:
    return CODECS[name]
