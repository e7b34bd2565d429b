"""The models a key's pool can serve, as Google describes them (native model objects)."""

from typing import Any

import orjson
from django.conf import settings

from common.naming import model_bare
from rotator import aliases, oauth, pool
from rotator.aliases import Alias
from rotator.context import RequestContext
from rotator.pool import CredentialView
from rotator.upstream import TRANSPORT_ERRORS, upstream_client_for


async def models_list(ctx: RequestContext) -> list[dict[str, Any]]:
    """The native model descriptions the caller's pool can serve, filtered by the key, then
    the aliases the caller may call (exact names only: a pattern names no model)."""
    served = await pool.models_for_pool(key=ctx.key, fetch=_models_fetch)
    allowed = ctx.key.allowed_models
    models = [m for m in served if not allowed or model_id(m) in allowed]
    by_id = {model_id(m): m for m in served}
    table = await aliases.alias_table_current()
    listed: dict[str, dict[str, Any]] = {model_id(m): m for m in models}
    for alias in table.of_user(ctx.key.user_id):
        target = by_id.get(alias.target)
        if alias.is_pattern or target is None:
            continue
        if allowed and alias.target not in allowed and alias.name not in allowed:
            continue
        listed[alias.name] = alias_model(alias, target=target)
    return list(listed.values())


def alias_model(alias: Alias, *, target: dict[str, Any]) -> dict[str, Any]:
    """The native description of `alias`: its target's, under the alias's name."""
    shown = target.get("displayName") or alias.target
    return {**target, "name": f"models/{alias.name}", "displayName": f"{alias.name} ({shown})"}


# The method a model list names for each call: Google lists the unary form only.
_LISTED_METHOD = {
    "streamGenerateContent": "generateContent",
    "batchEmbedContents": "embedContent",
}


async def model_serves(*, credential: CredentialView, model: str, method: str) -> bool | None:
    """What the credential's own model list says about `model` for `method`: True (listed
    for it), False (not listed, or listed without the method), None (the list could not be
    read). One metadata call, on a 404 only; it costs no quota."""
    wanted = _LISTED_METHOD.get(method, method)
    if credential.is_oauth:
        listed = {model_id(m): m for m in oauth.code_assist_models()}
        native: dict[str, Any] | None = listed.get(model_bare(model))
    else:
        try:
            response = await upstream_client_for(credential).get(
                f"{settings.GEMINI_UPSTREAM_URL}/models/{model_bare(model)}",
                headers={"x-goog-api-key": credential.secret()},
            )
        except TRANSPORT_ERRORS:
            return None
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            return None
        try:
            native = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(native, dict):
        return False
    methods = native.get("supportedGenerationMethods")
    return isinstance(methods, list) and wanted in methods


def model_id(native: dict[str, Any]) -> str:
    """A native model object's id without Google's "models/" prefix."""
    return model_bare(str(native.get("name", "")))


async def _models_fetch(credential: CredentialView) -> list[dict[str, Any]] | None:
    if credential.is_oauth:
        return oauth.code_assist_models()
    try:
        response = await upstream_client_for(credential).get(
            f"{settings.GEMINI_UPSTREAM_URL}/models",
            headers={"x-goog-api-key": credential.secret()},
            params={"pageSize": 1000},
        )
    except TRANSPORT_ERRORS:
        return None
    if response.status_code != 200:
        return None
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    models = document.get("models") if isinstance(document, dict) else None
    return models if isinstance(models, list) else None
