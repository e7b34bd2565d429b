"""The management REST API (/api/) and the config endpoints of the system we replace
(/v1/config/*): one view per operation, each calling one core function."""

from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.validators import UniqueValidator
from rest_framework.views import APIView, exception_handler

from accounts import api_selectors
from accounts.api_auth import IsMasterKey, MasterKeyAuthentication
from accounts.api_schema import ApiAutoSchema
from accounts.compat import ConfigUpdated, config_update
from accounts.models import ApiKey, Credential
from accounts.serializers import (
    ID_MAX,
    POSITIVE_INT_MAX,
    ApiKeySerializer,
    CredentialSerializer,
    GeminiApiKeyField,
    MarkSerializer,
    OAuthAccountField,
    RotatorKeyField,
    UserSerializer,
)
from accounts.services import (
    api_key_create,
    api_key_revoke,
    credential_add,
)
from common import clock
from common.errors import RotatorError
from rotator.credentials import credential_check, credentials_enable
from rotator.models import Mark
from rotator.pool import marks_clear, pool_rotate
from rotator.render import openai_error_response

# ------------------------------------------------------------------------------ plumbing


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the core's ValidationError (accounts.services) as a 400."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=serializers.as_serializer_error(exc))
    return exception_handler(exc, context)


def _error_lines(detail: Any, path: str = "") -> list[tuple[str, str]]:
    """(field path, message) pairs of a DRF error detail, depth first."""
    if isinstance(detail, dict):
        return [
            pair
            for key, value in detail.items()
            for pair in _error_lines(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [(path, str(item)) for item in detail]
        return [
            pair
            for index, item in enumerate(detail)
            for pair in _error_lines(item, f"{path}.{index}")
        ]
    return [(path, str(detail))]


_OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """The /v1 dialect for the config endpoints: every error as OpenAI's error object, rendered
    by rotator.render. Messages come from the validators, never from what was sent."""
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError | DjangoValidationError):
        lines = _error_lines(response.data)
        param = next((path for path, _ in lines if path != "non_field_errors"), None)
        message = "; ".join(
            text if path in ("", "non_field_errors") else f"{path}: {text}" for path, text in lines
        )
        code: str | None = "invalid_request"
    else:
        param = None
        message = str(response.data.get("detail", "")) if isinstance(response.data, dict) else ""
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else None
    error = RotatorError(message, param=param, code=code)
    error.status = response.status_code
    error.openai_type = _OPENAI_TYPES.get(response.status_code, "invalid_request_error")
    rendered = openai_error_response(error)
    for header in ("WWW-Authenticate", "Allow"):
        if header in response:
            rendered[header] = response[header]
    return rendered


class OperatorApi(APIView):
    """Base of the /api/ views: master key or staff (settings.REST_FRAMEWORK), JSON bodies."""

    schema = ApiAutoSchema()
    parser_classes = [JSONParser]

    def get_exception_handler(self) -> Any:
        return api_exception_handler


class ApiPagination(LimitOffsetPagination):
    """LimitOffset pages whose parameters are checked: a limit or offset that is not a whole
    number in range is a 400, not silently replaced by the default."""

    # A ceiling keeps one request's cost bounded (and LIMIT within what databases accept).
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        default = self.default_limit or self.max_limit
        return self._number(request, self.limit_query_param, default, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._number(request, self.offset_query_param, 0, 0, ID_MAX)

    @staticmethod
    def _number(request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise exceptions.ValidationError({name: [f"A whole number from {low} to {high}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0},
        }
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


class OperatorListApi(ListAPIView):  # type: ignore[type-arg]
    """Base of the /api/ lists: LimitOffset pages (PAGE_SIZE by default), filters and ordering
    validated by the view's nested FilterSerializer (query parameters; unknown ones are
    ignored)."""

    schema = ApiAutoSchema()
    pagination_class = ApiPagination
    FilterSerializer: type[serializers.Serializer[Any]]

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def filters(self) -> dict[str, Any]:
        serializer = self.FilterSerializer(data=self.request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


def _orderings(*fields: str) -> list[str]:
    return [choice for field in fields for choice in (field, f"-{field}")]


def _id_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=ID_MAX, **kwargs)


# ---------------------------------------------------------------------------------- users


class UserListApi(OperatorListApi):
    class FilterSerializer(serializers.Serializer[Any]):
        username = serializers.CharField(required=False, max_length=150)
        search = serializers.CharField(required=False, max_length=150)
        is_staff = serializers.BooleanField(required=False)
        is_active = serializers.BooleanField(required=False)
        ordering = serializers.ChoiceField(
            choices=_orderings("id", "username", "date_joined"), required=False
        )

    serializer_class = UserSerializer

    def get_queryset(self) -> Any:
        return api_selectors.users_list(**self.filters())


class UserCreateApi(OperatorApi):
    """Creates a user who can own API keys and a credential pool (no password, not staff:
    staff accounts are made with createsuperuser or in the admin)."""

    class InputSerializer(serializers.Serializer[Any]):
        username = serializers.CharField(
            max_length=150,
            validators=[
                UnicodeUsernameValidator(),
                UniqueValidator(queryset=User.objects.all(), message="That username is taken."),
            ],
        )
        email = serializers.EmailField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: UserSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            user = User.objects.create_user(**serializer.validated_data)
        return Response(
            UserSerializer(api_selectors.user_get(user_id=user.id)).data,
            status=status.HTTP_201_CREATED,
        )


class UserDetailApi(OperatorApi):
    @extend_schema(responses=UserSerializer)
    def get(self, request: Request, pk: int) -> Response:
        user = api_selectors.user_get(user_id=pk)
        if user is None:
            raise exceptions.NotFound("No such user.")
        return Response(UserSerializer(user).data)


# ------------------------------------------------------------------------------- API keys


class ApiKeyListApi(OperatorListApi):
    class FilterSerializer(serializers.Serializer[Any]):
        user = _id_field(required=False)
        revoked = serializers.BooleanField(required=False)
        active = serializers.BooleanField(
            required=False, help_text="true: neither revoked nor expired; false: the others."
        )
        search = serializers.CharField(required=False, max_length=100)
        ordering = serializers.ChoiceField(
            choices=_orderings("id", "created_at", "last_used_at", "expires_at", "name"),
            required=False,
        )

    serializer_class = ApiKeySerializer

    def get_queryset(self) -> Any:
        return api_selectors.api_keys_list(**self.filters(), now=clock.now())


class ApiKeyCreateApi(OperatorApi):
    """Issues a key; the answer holds its secret, shown this once and never stored."""

    class InputSerializer(serializers.Serializer[Any]):
        user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all())
        name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        secret = RotatorKeyField(
            required=False,
            help_text="Register a key clients already use instead of generating one.",
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        allowed_models = serializers.ListField(
            child=serializers.CharField(max_length=200),
            required=False,
            default=list,
            max_length=500,
            help_text="Model names this key may use; empty means all.",
        )
        requests_per_minute = serializers.IntegerField(
            min_value=1, max_value=POSITIVE_INT_MAX, required=False, allow_null=True, default=None
        )
        requests_per_day = serializers.IntegerField(
            min_value=1, max_value=POSITIVE_INT_MAX, required=False, allow_null=True, default=None
        )

    class OutputSerializer(ApiKeySerializer):
        secret = serializers.SerializerMethodField()

        class Meta(ApiKeySerializer.Meta):
            fields = [*ApiKeySerializer.Meta.fields, "secret"]

        def get_secret(self, api_key: ApiKey) -> str:
            return str(self.context["secret"])

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            api_key, secret = api_key_create(**serializer.validated_data)
        output = self.OutputSerializer(api_key, context={"secret": secret})
        return Response(output.data, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(OperatorApi):
    @extend_schema(responses=ApiKeySerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(ApiKeySerializer(get_object_or_404(ApiKey, pk=pk)).data)


class ApiKeyRevokeApi(OperatorApi):
    """Revokes a key: every server process refuses it from its next request on."""

    @extend_schema(request=None, responses=ApiKeySerializer)
    def post(self, request: Request, pk: int) -> Response:
        api_key = get_object_or_404(ApiKey, pk=pk)
        with transaction.atomic():
            api_key_revoke(api_key=api_key, now=clock.now())
        return Response(ApiKeySerializer(api_key).data)


# ---------------------------------------------------------------------------- credentials


class CredentialListApi(OperatorListApi):
    class FilterSerializer(serializers.Serializer[Any]):
        user = _id_field(required=False)
        kind = serializers.ChoiceField(choices=Credential.Kind.choices, required=False)
        status = serializers.ChoiceField(choices=Credential.Status.choices, required=False)
        enabled = serializers.BooleanField(required=False)
        project_label = serializers.CharField(required=False, max_length=100)
        search = serializers.CharField(required=False, max_length=200)
        ordering = serializers.ChoiceField(
            choices=_orderings(
                "id", "position", "created_at", "last_used_at", "requests_total", "label"
            ),
            required=False,
            help_text="Default: by user, then pool order.",
        )

    serializer_class = CredentialSerializer

    def get_queryset(self) -> Any:
        return api_selectors.credentials_list(**self.filters())


class CredentialCreateApi(OperatorApi):
    """Adds a Gemini API key or a Gemini CLI OAuth account to a user's pool. The same secret
    twice is reported, not doubled (an OAuth account with a known refresh token is updated);
    a full pool (MAX_CREDENTIALS) drops its oldest credential to make room."""

    class InputSerializer(serializers.Serializer[Any]):
        user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all())
        api_key = GeminiApiKeyField(required=False)
        oauth = OAuthAccountField(required=False)
        # DRF moves declared fields off the class, so this shadows nothing at run time.
        label = serializers.CharField(  # type: ignore[assignment]
            max_length=200, required=False, allow_blank=True
        )
        project_label = serializers.CharField(max_length=100, required=False, allow_blank=True)
        oauth_client_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
        oauth_client_secret = serializers.CharField(
            max_length=500, required=False, allow_blank=True, write_only=True
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("api_key" in attrs) == ("oauth" in attrs):
                raise serializers.ValidationError(
                    "Give exactly one of api_key (a Gemini API key) or oauth (OAuth JSON)."
                )
            return attrs

    class OutputSerializer(serializers.Serializer[Any]):
        action = serializers.ChoiceField(
            choices=["created", "updated", "replaced", "duplicate"], read_only=True
        )
        replaced_label = serializers.CharField(
            read_only=True, help_text="The credential dropped from a full pool, masked."
        )
        credential = CredentialSerializer(read_only=True)

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer}
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            added = credential_add(**serializer.validated_data)
        new = added.action in ("created", "replaced")
        return Response(
            self.OutputSerializer(added).data,
            status=status.HTTP_201_CREATED if new else status.HTTP_200_OK,
        )


class CredentialDetailApi(OperatorApi):
    @extend_schema(responses=CredentialSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(CredentialSerializer(get_object_or_404(Credential, pk=pk)).data)


class CredentialEnableApi(OperatorApi):
    """Puts a credential back in its pool; also clears an invalid status."""

    enabled = True

    @extend_schema(request=None, responses=CredentialSerializer)
    def post(self, request: Request, pk: int) -> Response:
        credential = get_object_or_404(Credential, pk=pk)
        with transaction.atomic():
            credentials_enable(credential_ids=[credential.id], enabled=self.enabled)
        credential.refresh_from_db()
        return Response(CredentialSerializer(credential).data)


class CredentialDisableApi(CredentialEnableApi):
    """Takes a credential out of its pool without deleting it."""

    enabled = False


class CredentialCheckApi(OperatorApi):
    """Asks upstream whether the credential works (one cheap call). A pass restores an invalid
    credential; a definite refusal marks it invalid."""

    class OutputSerializer(serializers.Serializer[Any]):
        ok = serializers.BooleanField(read_only=True)
        message = serializers.CharField(read_only=True)
        credential = CredentialSerializer(read_only=True)

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        credential = get_object_or_404(Credential, pk=pk)
        # No transaction around it: it waits on the network, and the core writes its verdict
        # in single-row updates of its own.
        result = credential_check(credential=credential, now=clock.now())
        credential.refresh_from_db()
        output = {"ok": result.ok, "message": result.message, "credential": credential}
        return Response(self.OutputSerializer(output).data)


class CredentialDeleteApi(OperatorApi):
    """Deletes a credential; its usage history stays, under its label."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, pk: int) -> Response:
        credential = get_object_or_404(Credential, pk=pk)
        with transaction.atomic():
            credential.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------- marks


class MarkListApi(OperatorListApi):
    """Availability marks: a (credential, model) that selection skips until `until`."""

    class FilterSerializer(serializers.Serializer[Any]):
        user = _id_field(required=False)
        credential = _id_field(required=False)
        model = serializers.CharField(required=False, max_length=200)
        reason = serializers.ChoiceField(choices=Mark.Reason.choices, required=False)
        active = serializers.BooleanField(
            required=False, help_text="true: in force now; false: lapsed."
        )
        ordering = serializers.ChoiceField(
            choices=_orderings("id", "until", "created_at", "model", "credential"),
            required=False,
        )

    serializer_class = MarkSerializer

    def get_queryset(self) -> Any:
        return api_selectors.marks_list(**self.filters(), now=clock.now())


class MarkClearApi(OperatorApi):
    """Clears every mark (all models, all reasons) of the given credentials."""

    class InputSerializer(serializers.Serializer[Any]):
        credentials = serializers.PrimaryKeyRelatedField(
            queryset=Credential.objects.all(), many=True, allow_empty=False
        )

    class OutputSerializer(serializers.Serializer[Any]):
        cleared = serializers.IntegerField(read_only=True)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = [credential.id for credential in serializer.validated_data["credentials"]]
        with transaction.atomic():
            cleared = marks_clear(credential_ids=ids)
        return Response(self.OutputSerializer({"cleared": cleared}).data)


# ---------------------------------------------------------------------------------- usage


class UsageListApi(OperatorListApi):
    """Usage sums between two quota days, grouped by any of day, user, api_key, credential and
    model (comma-separated `group_by`); without grouping, one row of totals. Counts reach the
    database within USAGE_FLUSH_SECONDS of each request."""

    class FilterSerializer(serializers.Serializer[Any]):
        since = serializers.DateField(required=False, help_text="First quota day, inclusive.")
        until = serializers.DateField(required=False, help_text="Last quota day, inclusive.")
        user = _id_field(required=False)
        api_key = _id_field(required=False)
        credential = _id_field(required=False)
        model = serializers.CharField(required=False, max_length=200)
        group_by = serializers.RegexField(
            r"^\s*[a-z_]+(\s*,\s*[a-z_]+)*\s*$",
            required=False,
            max_length=100,
            help_text="Comma-separated: " + ", ".join(api_selectors.USAGE_GROUPS),
        )
        ordering = serializers.ChoiceField(
            choices=_orderings(*api_selectors.USAGE_GROUPS, *api_selectors.USAGE_SUMS),
            required=False,
            help_text="A grouped dimension or a sum; default: the groups, newest day first.",
        )

        def validate_group_by(self, value: str) -> list[str]:
            groups = [part.strip() for part in value.split(",")]
            unknown = [group for group in groups if group not in api_selectors.USAGE_GROUPS]
            if unknown:
                raise serializers.ValidationError(
                    f"Unknown group {', '.join(unknown)}; choose from "
                    + ", ".join(api_selectors.USAGE_GROUPS)
                    + "."
                )
            return list(dict.fromkeys(groups))

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            since, until = attrs.get("since"), attrs.get("until")
            if since and until and since > until:
                raise serializers.ValidationError({"until": "Must not be before since."})
            ordering = attrs.get("ordering", "").lstrip("-")
            if ordering in api_selectors.USAGE_GROUPS and ordering not in attrs.get("group_by", []):
                raise serializers.ValidationError(
                    {"ordering": f"Order by {ordering} only when grouping by it."}
                )
            return attrs

    class OutputSerializer(serializers.Serializer[Any]):
        """One group's sums; a dimension's fields appear only when grouped by it."""

        day = serializers.DateField(required=False)
        user = serializers.IntegerField(required=False)
        username = serializers.CharField(source="user__username", required=False)
        api_key = serializers.IntegerField(
            required=False, allow_null=True, help_text="null: a deleted key."
        )
        api_key_prefix = serializers.CharField(
            source="api_key__prefix", required=False, allow_null=True
        )
        credential = serializers.IntegerField(
            required=False, allow_null=True, help_text="null: a deleted credential."
        )
        credential_label = serializers.CharField(required=False)
        model = serializers.CharField(required=False)
        requests = serializers.IntegerField()
        successes = serializers.IntegerField()
        failures = serializers.IntegerField()
        rate_limited = serializers.IntegerField()
        prompt_tokens = serializers.IntegerField()
        completion_tokens = serializers.IntegerField()
        total_tokens = serializers.IntegerField()

        def to_representation(self, instance: Any) -> dict[str, Any]:
            data = super().to_representation(instance)
            return {
                name: value for name, value in data.items() if self.fields[name].source in instance
            }

    serializer_class = OutputSerializer

    def get_queryset(self) -> Any:
        return api_selectors.usage_summarize(**self.filters())


# ----------------------------------------------------------------- config (Workers dialect)


class ConfigApi(APIView):
    """Base of /v1/config/*: the master key only, errors in the OpenAI dialect. These paths
    run without middleware (no session), so no other authentication could apply anyway."""

    authentication_classes = [MasterKeyAuthentication]
    permission_classes = [IsMasterKey]
    parser_classes = [JSONParser]
    schema = ApiAutoSchema()

    def get_exception_handler(self) -> Any:
        return openai_exception_handler


class CredentialChangeSerializer(serializers.Serializer[Any]):
    """What config/update did with one credential."""

    kind = serializers.CharField(source="credential.kind", read_only=True)
    credential = serializers.CharField(
        source="credential.display_name", read_only=True, help_text="Masked."
    )
    action = serializers.ChoiceField(
        choices=["created", "updated", "replaced", "duplicate"], read_only=True
    )
    replaced = serializers.CharField(
        source="replaced_label", read_only=True, help_text="Dropped from a full pool, masked."
    )


class ConfigUpdateApi(ConfigApi):
    """Registers a user's key (creating the user if new) and adds credentials to their pool,
    as the Cloudflare Workers' /v1/config/update did. All or nothing."""

    class InputSerializer(serializers.Serializer[Any]):
        apiKey = RotatorKeyField(help_text="The user's key for this gateway.")
        gcpServiceAccount = OAuthAccountField(required=False)
        gcpServiceAccounts = serializers.ListField(
            child=OAuthAccountField(), required=False, max_length=1000
        )
        geminiApiKey = GeminiApiKeyField(required=False)
        geminiApiKeys = serializers.ListField(
            child=GeminiApiKeyField(), required=False, max_length=1000
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            oauth = [*attrs.get("gcpServiceAccounts", [])]
            if "gcpServiceAccount" in attrs:
                oauth.insert(0, attrs["gcpServiceAccount"])
            keys = [*attrs.get("geminiApiKeys", [])]
            if "geminiApiKey" in attrs:
                keys.insert(0, attrs["geminiApiKey"])
            if not oauth and not keys:
                raise serializers.ValidationError(
                    "Send gcpServiceAccount (OAuth JSON), geminiApiKey or geminiApiKeys."
                )
            return {"secret": attrs["apiKey"], "oauth_accounts": oauth, "gemini_api_keys": keys}

    class OutputSerializer(serializers.Serializer[Any]):
        success = serializers.SerializerMethodField()
        message = serializers.CharField(source="summary", read_only=True)
        user = serializers.CharField(source="api_key.user.username", read_only=True)
        userCreated = serializers.BooleanField(source="user_created", read_only=True)
        apiKey = serializers.CharField(source="api_key.prefix", read_only=True, help_text="Masked.")
        credentials = CredentialChangeSerializer(source="added", many=True, read_only=True)
        poolSize = serializers.IntegerField(source="pool_size", read_only=True)

        def get_success(self, updated: ConfigUpdated) -> bool:
            return True

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            updated = config_update(**serializer.validated_data)
        return Response(self.OutputSerializer(updated).data)


class ConfigRotateApi(ConfigApi):
    """Advances the user's pool by one (manual rotation) and names the credential now first."""

    class InputSerializer(serializers.Serializer[Any]):
        apiKey = RotatorKeyField(help_text="The user's key for this gateway.")

        def validate_apiKey(self, value: str) -> ApiKey:
            api_key = api_selectors.api_key_by_secret(secret=value)
            if api_key is None:
                raise serializers.ValidationError("No user has this key.")
            return api_key

    class OutputSerializer(serializers.Serializer[Any]):
        success = serializers.BooleanField(read_only=True)
        credential = serializers.CharField(
            read_only=True, allow_null=True, help_text="Now first in line, masked; null if none."
        )
        credentialId = serializers.IntegerField(read_only=True, allow_null=True)
        kind = serializers.CharField(read_only=True, allow_null=True)
        poolSize = serializers.IntegerField(read_only=True, help_text="Usable credentials.")

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key = serializer.validated_data["apiKey"]
        with transaction.atomic():
            rotated = pool_rotate(user_id=api_key.user_id, now=clock.now())
        first = rotated.first_credential
        output = {
            "success": True,
            "credential": first.display_name if first else None,
            "credentialId": first.id if first else None,
            "kind": first.kind if first else None,
            "poolSize": rotated.pool_size,
        }
        return Response(self.OutputSerializer(output).data)
