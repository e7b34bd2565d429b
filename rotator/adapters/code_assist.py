"""Gemini CLI OAuth accounts on Code Assist: the pivot wrapped in its {model, project,
request} envelope, with the account's access token; answers unwrapped back to the pivot."""

import orjson
from django.conf import settings

from rotator import oauth
from rotator.adapters.base import Answer, Failure, StreamStart, UpstreamCall
from rotator.adapters.gemini_api_key import (
    GENERATE_METHODS,
    pivot_answer,
    pivot_event,
    pivot_event_usage,
)
from rotator.adapters.http import json_call, stream_open
from rotator.classify import Outcome, Verdict
from rotator.context import RequestContext
from rotator.pool import CredentialView
from rotator.signatures import signatures_fit

BACKEND = "code_assist"


def _url(method: str, *, sse: bool = False) -> str:
    suffix = "?alt=sse" if sse else ""
    return f"{settings.CODE_ASSIST_UPSTREAM_URL}:{method}{suffix}"


def _envelope(call: UpstreamCall, project: str) -> bytes:
    body = call.pivot_body()
    if call.method == "countTokens":
        # Code Assist counts contents only: no system instruction, tools or config.
        inner = body.get("generateContentRequest")
        source = inner if isinstance(inner, dict) else body
        request = {"model": f"models/{call.model}", "contents": source.get("contents", [])}
        return orjson.dumps({"request": request})
    if call.method in GENERATE_METHODS:
        body = signatures_fit(body, backend=BACKEND, model=call.model)
    return orjson.dumps({"model": call.model, "project": project, "request": body})


class CodeAssistAdapter:
    backend = BACKEND

    async def send(
        self, ctx: RequestContext, credential: CredentialView, call: UpstreamCall
    ) -> Failure | Answer | StreamStart:
        result = await self._send_once(ctx, credential, call)
        if (
            isinstance(result, Failure)
            and result.verdict.outcome is Outcome.UNAUTHENTICATED
            # An access token Google no longer accepts: refresh once, same credential.
            and await oauth.access_token_refresh_forced(credential=credential)
        ):
            result = await self._send_once(ctx, credential, call)
        return result

    async def _send_once(
        self, ctx: RequestContext, credential: CredentialView, call: UpstreamCall
    ) -> Failure | Answer | StreamStart:
        token = await oauth.access_token(credential=credential)
        if isinstance(token, Verdict):
            return Failure(token, None)
        project = await oauth.code_assist_project_ensure(credential=credential)
        if isinstance(project, Verdict):
            return Failure(project, None)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        content = _envelope(call, project)
        if call.stream:
            return await stream_open(
                ctx,
                credential,
                url=_url(call.method, sse=True),
                headers=headers,
                content=content,
                decode=pivot_event(credential),
                usage_of=pivot_event_usage,
                backend=BACKEND,
            )
        result = await json_call(
            ctx, credential, url=_url(call.method), headers=headers, content=content
        )
        if isinstance(result, Failure):
            return result
        return pivot_answer(call.method, result)


adapter = CodeAssistAdapter()
