"""Fields and read serializers shared by the management API and the config endpoints.

Secrets only ever go in (write-only fields); what comes out is their mask.
"""

import json
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import ApiKey, Credential
from accounts.services import (
    OUR_KEY_MIN_CHARS,
    OUR_KEY_RULE,
    OAuthAccount,
    api_key_secret_validate,
    oauth_account_parse,
)
from common import clock
from rotator.models import Mark, ModelAlias

# PositiveIntegerField's ceiling: anything larger would fail in the database, not here.
POSITIVE_INT_MAX = 2_147_483_647
# Primary keys are BigAutoField.
ID_MAX = 9_223_372_036_854_775_807

OAUTH_ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Gemini CLI OAuth account: the contents of ~/.gemini/oauth_creds.json, an "
    "ACCOUNTS entry ({refresh_token, disabled, projectId}) or a gcpServiceAccount object. A "
    "string holding that JSON is accepted too. Only refresh_token is required.",
    "properties": {
        "refresh_token": {"type": "string", "minLength": 1, "maxLength": 4096},
        "access_token": {"type": "string"},
        "id_token": {"type": "string"},
        "scope": {"type": "string"},
        "token_type": {"type": "string"},
        "expiry_date": {"type": "number", "description": "Epoch milliseconds."},
        "projectId": {"type": "string", "maxLength": 200},
        "project_id": {"type": "string", "maxLength": 200},
        "disabled": {"type": "boolean"},
    },
    "required": ["refresh_token"],
    "additionalProperties": True,
}


OAUTH_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "refresh_token": str,
    "access_token": str,
    "id_token": str,
    "scope": str,
    "token_type": str,
    "expiry_date": (int, float),
    "projectId": str,
    "project_id": str,
    "disabled": bool,
}


def _type_matches(value: Any, expected: type | tuple[type, ...]) -> bool:
    # bool is an int to Python, never a number or a string to JSON.
    if expected is bool:
        return isinstance(value, bool)
    return isinstance(value, expected) and not isinstance(value, bool)


@extend_schema_field(OAUTH_ACCOUNT_SCHEMA)
class OAuthAccountField(serializers.Field[OAuthAccount, Any, Any, Any]):
    """Parses an OAuth JSON object (or a string of it) into an OAuthAccount."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["write_only"] = True
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> OAuthAccount:
        try:
            account = oauth_account_parse(data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        # Parsed first (so a JSON string works), then held to the documented types: a
        # "disabled": "false" must not quietly read as true.
        document = json.loads(data) if isinstance(data, str) else data
        wrong = sorted(
            name
            for name, expected in OAUTH_FIELD_TYPES.items()
            if name in document and not _type_matches(document[name], expected)
        )
        if wrong:
            raise serializers.ValidationError(
                f"Wrong type for {', '.join(wrong)}: see the schema for each field's type."
            )
        # These end up in columns of bounded length (the e-mail becomes the label), and
        # PostgreSQL refuses NUL characters in text.
        stored = {
            "refresh_token": (account.refresh_token, 4096),
            "projectId": (account.project_id, 200),
            "the e-mail in id_token": (account.email, 200),
        }
        for name, (value, limit) in stored.items():
            if "\x00" in value or len(value) > limit:
                raise serializers.ValidationError(
                    f"{name} must be at most {limit} characters, without NUL characters."
                )
        return account


class GeminiApiKeyField(serializers.CharField):
    """A Gemini API key as pasted; write-only, shape-checked by accounts.services."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(write_only=True, min_length=20, max_length=200)
        kwargs.setdefault("validators", []).append(api_key_secret_validate)
        super().__init__(**kwargs)


class RotatorKeyField(serializers.CharField):
    """A Rotator API key secret (what clients send); write-only."""

    def __init__(self, **kwargs: Any) -> None:
        # One rule, worded once (accounts.services), whichever entry point refuses the key.
        kwargs.update(
            write_only=True,
            min_length=OUR_KEY_MIN_CHARS,
            max_length=200,
            error_messages={"min_length": OUR_KEY_RULE, "max_length": OUR_KEY_RULE},
        )
        kwargs.setdefault("validators", []).append(RegexValidator(r"^\S+$", OUR_KEY_RULE))
        super().__init__(**kwargs)


class UserSerializer(serializers.ModelSerializer[User]):
    # Not EmailField: its schema says format "email", which a blank address is not.
    email = serializers.CharField(read_only=True)
    api_keys = serializers.IntegerField(source="api_key_count", read_only=True)
    credentials = serializers.IntegerField(source="credential_count", read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "is_staff",
            "is_active",
            "date_joined",
            "last_login",
            "api_keys",
            "credentials",
        ]
        read_only_fields = fields


class ApiKeySerializer(serializers.ModelSerializer[ApiKey]):
    allowed_models = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "user",
            "name",
            "prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked",
            "revoked_at",
            "allowed_models",
            "requests_per_minute",
            "requests_per_day",
        ]
        read_only_fields = fields


class CredentialSerializer(serializers.ModelSerializer[Credential]):
    class Meta:
        model = Credential
        fields = [
            "id",
            "user",
            "kind",
            "label",
            "secret_mask",
            "display_name",
            "project_label",
            "oauth_project_id",
            "proxy_url_mask",
            "enabled",
            "status",
            "last_error",
            "last_error_at",
            "position",
            "last_used_at",
            "created_at",
            "requests_total",
            "requests_since_rotation",
        ]
        read_only_fields = fields


class MarkSerializer(serializers.ModelSerializer[Mark]):
    credential_label = serializers.CharField(source="credential.display_name", read_only=True)
    user = serializers.IntegerField(source="credential.user_id", read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = Mark
        fields = [
            "id",
            "credential",
            "credential_label",
            "user",
            "model",
            "reason",
            "until",
            "active",
            "message",
            "created_at",
        ]
        read_only_fields = fields

    def get_active(self, mark: Mark) -> bool:
        return mark.until > clock.now()


class ModelAliasSerializer(serializers.ModelSerializer[ModelAlias]):
    class Meta:
        model = ModelAlias
        fields = ["id", "user", "name", "target", "created_at", "updated_at"]
        read_only_fields = fields
