"""The management REST API (/api/): one ViewSet per resource, routed by api.urls, and the
config endpoints of the system we replace (/v1/config/*). Each change calls one core function."""

from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Model
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.validators import UniqueValidator
from rest_framework.views import APIView, exception_handler

from accounts.compat import ConfigUpdated, api_key_by_secret, config_update
from accounts.models import ApiKey, Credential, proxy_url_validate
from accounts.services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    credential_add,
    credentials_import_text,
)
from api import selectors as api_selectors
from api.auth import IsMasterKey, MasterKeyAuthentication
from api.schema import ApiAutoSchema
from api.serializers import (
    ID_MAX,
    POSITIVE_INT_MAX,
    ApiKeySerializer,
    CredentialSerializer,
    GeminiApiKeyField,
    MarkSerializer,
    ModelAliasSerializer,
    OAuthAccountField,
    RotatorKeyField,
    UserSerializer,
)
from common import clock
from common.errors import RotatorError
from rotator.credentials import credential_check, credentials_enable
from rotator.models import ALIAS_NAME_PATTERN, MODEL_NAME_PATTERN, Mark, ModelAlias, QuotaReading
from rotator.pool import marks_clear, pool_proxy_set, pool_rotate
from rotator.quota import credential_quota_fetch
from rotator.render import openai_error_response
from stats.export import usage_csv, usage_csv_filename, usage_range
from stats.models import UsageCounter

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


class ResourceViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Base of the /api/ resources. Reads are DRF's list and retrieve; each change parses its
    nested Input serializer and calls one core function. The list's query parameters (filters
    and `ordering`) are checked by the nested FilterSerializer: a bad value is a 400, an unknown
    parameter is ignored. Who may call what: api.auth.ModelPermission, from `permission_model`
    and, for the actions, the `required_permission` given to @action."""

    schema = ApiAutoSchema()
    parser_classes = [JSONParser]
    pagination_class = ApiPagination
    # Ids are whole numbers; anything else is an unknown route (a JSON 404), not a bad id.
    lookup_value_regex = "[0-9]+"
    permission_model: type[Model]
    required_permission: str | None = None
    FilterSerializer: type[serializers.Serializer[Any]] | None = None

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def filters(self) -> dict[str, Any]:
        if self.FilterSerializer is None:
            return {}
        serializer = self.FilterSerializer(data=self.request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class ProxyUrlField(serializers.CharField):
    """A write-only egress proxy URL: trimmed, checked (the error never repeats the URL, which
    may hold a password), "" to remove."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_blank=True, write_only=True, max_length=2000, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        url = str(super().to_internal_value(data)).strip()
        if url:
            try:
                proxy_url_validate(url)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages) from None
        return url


def _orderings(*fields: str) -> list[str]:
    return [choice for field in fields for choice in (field, f"-{field}")]


def _id_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=ID_MAX, **kwargs)


def _username_field(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(
        max_length=150,
        validators=[
            UnicodeUsernameValidator(),
            UniqueValidator(queryset=User.objects.all(), message="That username is taken."),
        ],
        **kwargs,
    )


# ---------------------------------------------------------------------------------- users


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ResourceViewSet):
    """Users, who own API keys and a credential pool. Created without a password and not
    staff: operators are made with createsuperuser or in the admin."""

    permission_model = User
    serializer_class = UserSerializer

    class FilterSerializer(serializers.Serializer[Any]):
        username = serializers.CharField(required=False, max_length=150)
        search = serializers.CharField(required=False, max_length=150)
        is_staff = serializers.BooleanField(required=False)
        is_active = serializers.BooleanField(required=False)
        ordering = serializers.ChoiceField(
            choices=_orderings("id", "username", "date_joined"), required=False
        )

    class CreateInput(serializers.Serializer[Any]):
        username = _username_field()
        email = serializers.EmailField(required=False, allow_blank=True, default="")

    class UpdateInput(serializers.Serializer[Any]):
        username = _username_field(required=False)
        email = serializers.EmailField(required=False, allow_blank=True)
        is_active = serializers.BooleanField(
            required=False, help_text="Django's flag: false refuses the user's sign-ins."
        )

    class RotateOutput(serializers.Serializer[Any]):
        credential = CredentialSerializer(
            source="first_credential", read_only=True, allow_null=True
        )
        pool_size = serializers.IntegerField(read_only=True, help_text="Usable credentials.")

    def get_queryset(self) -> Any:
        return api_selectors.users_list(**(self.filters() if self.action == "list" else {}))

    @extend_schema(request=CreateInput, responses={201: UserSerializer})
    def create(self, request: Request) -> Response:
        serializer = self.CreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            user = User.objects.create_user(**serializer.validated_data)
        created = api_selectors.user_get(user_id=user.id)
        return Response(UserSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UpdateInput, responses=UserSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        user = self.get_object()
        serializer = self.UpdateInput(instance=user, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            for name, value in serializer.validated_data.items():
                setattr(user, name, value)
            user.save(update_fields=list(serializer.validated_data))
        return Response(UserSerializer(api_selectors.user_get(user_id=user.id)).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        """Deletes the user with their keys, pool and usage history."""
        user = self.get_object()
        with transaction.atomic():
            user.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    class PoolProxyInput(serializers.Serializer[Any]):
        proxy_url = ProxyUrlField(
            help_text="Egress proxy for every credential of the user's pool that names none of "
            "its own (http://host:3128, socks5://user:password@host:1080); empty removes it.",
        )

    class PoolProxyOutput(serializers.Serializer[Any]):
        proxy_url_mask = serializers.CharField(
            read_only=True, help_text="The pool's proxy, masked; empty when there is none."
        )

    @extend_schema(request=PoolProxyInput, responses=PoolProxyOutput)
    @action(
        detail=True,
        methods=["post"],
        url_path="pool-proxy",
        required_permission="rotator.change_poolstate",
    )
    def pool_proxy(self, request: Request, pk: str) -> Response:
        """Sets or removes the egress proxy of the user's whole pool."""
        user = self.get_object()
        serializer = self.PoolProxyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        # No transaction around it: the pool's version is bumped after the row is saved, so no
        # process reloads the pool before the change is visible.
        state = pool_proxy_set(user_id=user.id, url=serializer.validated_data["proxy_url"])
        return Response(self.PoolProxyOutput(state).data)

    @extend_schema(request=None, responses=RotateOutput)
    @action(detail=True, methods=["post"], required_permission="rotator.change_poolstate")
    def rotate(self, request: Request, pk: str) -> Response:
        """Advances the user's pool by one (manual rotation): the answer names the credential
        now first in line."""
        user = self.get_object()
        with transaction.atomic():
            rotated = pool_rotate(user_id=user.id, now=clock.now())
        return Response(self.RotateOutput(rotated).data)


# ------------------------------------------------------------------------------- API keys


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ResourceViewSet):
    """Rotator API keys, which clients present. A key's secret appears once, in the answer
    that creates it, and is never stored."""

    permission_model = ApiKey
    serializer_class = ApiKeySerializer

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

    class UpdateInput(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=100, required=False, allow_blank=True)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        allowed_models = serializers.ListField(
            child=serializers.CharField(max_length=200),
            required=False,
            max_length=500,
            help_text="Model names this key may use; empty means all.",
        )
        requests_per_minute = serializers.IntegerField(
            min_value=1, max_value=POSITIVE_INT_MAX, required=False, allow_null=True
        )
        requests_per_day = serializers.IntegerField(
            min_value=1, max_value=POSITIVE_INT_MAX, required=False, allow_null=True
        )

    class CreateInput(UpdateInput):
        user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all())
        secret = RotatorKeyField(
            required=False,
            help_text="Register a key clients already use instead of generating one.",
        )

    class CreateOutput(ApiKeySerializer):
        secret = serializers.SerializerMethodField()

        class Meta(ApiKeySerializer.Meta):
            fields = [*ApiKeySerializer.Meta.fields, "secret"]

        def get_secret(self, api_key: ApiKey) -> str:
            return str(self.context["secret"])

    def get_queryset(self) -> Any:
        if self.action == "list":
            return api_selectors.api_keys_list(**self.filters(), now=clock.now())
        return ApiKey.objects.all()

    @extend_schema(request=CreateInput, responses={201: CreateOutput})
    def create(self, request: Request) -> Response:
        serializer = self.CreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            api_key, secret = api_key_create(**serializer.validated_data)
        output = self.CreateOutput(api_key, context={"secret": secret})
        return Response(output.data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UpdateInput, responses=ApiKeySerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        api_key = self.get_object()
        serializer = self.UpdateInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            api_key_update(api_key=api_key, **serializer.validated_data)
        return Response(ApiKeySerializer(api_key).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        """Deletes the key; its usage history stays, without it."""
        api_key = self.get_object()
        with transaction.atomic():
            api_key.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"], required_permission="accounts.change_apikey")
    def revoke(self, request: Request, pk: str) -> Response:
        """Revokes the key: every server process refuses it from its next request on."""
        api_key = self.get_object()
        with transaction.atomic():
            api_key_revoke(api_key=api_key, now=clock.now())
        return Response(ApiKeySerializer(api_key).data)


# ---------------------------------------------------------------------------- credentials


class CredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ResourceViewSet):
    """Upstream credentials (Gemini API keys, Gemini CLI OAuth accounts) in users' pools;
    their secrets only ever go in."""

    permission_model = Credential
    serializer_class = CredentialSerializer

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

    class CreateInput(serializers.Serializer[Any]):
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

    class CreateOutput(serializers.Serializer[Any]):
        action = serializers.ChoiceField(
            choices=["created", "updated", "replaced", "duplicate"], read_only=True
        )
        replaced_label = serializers.CharField(
            read_only=True, help_text="The credential dropped from a full pool, masked."
        )
        credential = CredentialSerializer(read_only=True)

    class UpdateInput(serializers.Serializer[Any]):
        label = serializers.CharField(  # type: ignore[assignment]
            max_length=200, required=False, allow_blank=True
        )
        project_label = serializers.CharField(max_length=100, required=False, allow_blank=True)
        position = serializers.IntegerField(
            min_value=0, max_value=POSITIVE_INT_MAX, required=False, help_text="Order in the pool."
        )
        proxy_url = ProxyUrlField(
            required=False,
            help_text="Egress proxy for this credential (http://host:3128, "
            "socks5://user:password@host:1080); empty removes it, and the pool's proxy (if "
            "any) applies. Shown only as proxy_url_mask.",
        )

    class ImportInput(serializers.Serializer[Any]):
        user = serializers.PrimaryKeyRelatedField(queryset=User.objects.all())
        text = serializers.CharField(
            max_length=1_000_000,
            help_text="One Gemini API key per line, or JSON: one OAuth account or an array.",
        )

    class ImportOutput(serializers.Serializer[Any]):
        created = serializers.IntegerField(read_only=True)
        updated = serializers.IntegerField(read_only=True)
        replaced = serializers.IntegerField(read_only=True)
        duplicates = serializers.IntegerField(read_only=True)
        rejected = serializers.ListField(
            source="errors",
            child=serializers.CharField(),
            read_only=True,
            help_text="What was not imported, and why.",
        )
        summary = serializers.CharField(read_only=True)

    class CheckOutput(serializers.Serializer[Any]):
        ok = serializers.BooleanField(read_only=True)
        message = serializers.CharField(read_only=True)
        credential = CredentialSerializer(read_only=True)

    class MarksClearOutput(serializers.Serializer[Any]):
        cleared = serializers.IntegerField(read_only=True)

    class QuotaBucketOutput(serializers.Serializer[Any]):
        model = serializers.CharField(read_only=True)
        remaining_fraction = serializers.FloatField(read_only=True, allow_null=True)
        remaining_amount = serializers.IntegerField(read_only=True, allow_null=True)
        token_type = serializers.CharField(read_only=True)
        reset_at = serializers.DateTimeField(read_only=True, allow_null=True)
        fetched_at = serializers.DateTimeField(read_only=True)

    class QuotaOutput(serializers.Serializer[Any]):
        ok = serializers.BooleanField(read_only=True)
        message = serializers.CharField(read_only=True)
        buckets = serializers.ListField(child=serializers.DictField(), read_only=True)

    def get_queryset(self) -> Any:
        if self.action == "list":
            return api_selectors.credentials_list(**self.filters())
        return Credential.objects.all()

    @extend_schema(request=CreateInput, responses={201: CreateOutput, 200: CreateOutput})
    def create(self, request: Request) -> Response:
        """Adds a Gemini API key or OAuth account to a user's pool: 201 for a new credential;
        200 when the same secret was there already (an OAuth account with a known refresh
        token is updated). A full pool (MAX_CREDENTIALS) drops its oldest to make room."""
        serializer = self.CreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            added = credential_add(**serializer.validated_data)
        new = added.action in ("created", "replaced")
        return Response(
            self.CreateOutput(added).data,
            status=status.HTTP_201_CREATED if new else status.HTTP_200_OK,
        )

    @extend_schema(request=ImportInput, responses=ImportOutput)
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        required_permission="accounts.add_credential",
    )
    def bulk_import(self, request: Request) -> Response:
        """Bulk import into one user's pool. Each item is added as POST /api/credentials/
        would; a bad item is reported in `errors` and the others are still imported."""
        serializer = self.ImportInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            summary = credentials_import_text(**serializer.validated_data)
        return Response(self.ImportOutput(summary).data)

    @extend_schema(request=UpdateInput, responses=CredentialSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        credential = self.get_object()
        serializer = self.UpdateInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        fields = list(changes)
        if "proxy_url" in changes:
            credential.proxy_url_set(changes.pop("proxy_url"))
            fields = [*changes, "proxy_url_encrypted", "proxy_url_mask"]
        with transaction.atomic():
            for name, value in changes.items():
                setattr(credential, name, value)
            # Saving fires accounts.signals, which reloads the pool everywhere.
            credential.save(update_fields=fields)
        return Response(CredentialSerializer(credential).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        """Deletes the credential; its usage history stays, under its label."""
        credential = self.get_object()
        with transaction.atomic():
            credential.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _enabled_set(self, *, enabled: bool) -> Response:
        credential = self.get_object()
        with transaction.atomic():
            credentials_enable(credential_ids=[credential.id], enabled=enabled)
        credential.refresh_from_db()
        return Response(CredentialSerializer(credential).data)

    @extend_schema(request=None, responses=CredentialSerializer)
    @action(detail=True, methods=["post"], required_permission="accounts.change_credential")
    def enable(self, request: Request, pk: str) -> Response:
        """Puts the credential back in its pool; also clears an invalid status."""
        return self._enabled_set(enabled=True)

    @extend_schema(request=None, responses=CredentialSerializer)
    @action(detail=True, methods=["post"], required_permission="accounts.change_credential")
    def disable(self, request: Request, pk: str) -> Response:
        """Takes the credential out of its pool without deleting it."""
        return self._enabled_set(enabled=False)

    @extend_schema(request=None, responses=CheckOutput)
    @action(detail=True, methods=["post"], required_permission="accounts.change_credential")
    def check(self, request: Request, pk: str) -> Response:
        """Asks upstream whether the credential works (one cheap call). A pass restores an
        invalid credential; a definite refusal marks it invalid."""
        credential = self.get_object()
        # No transaction around it: it waits on the network, and the core writes its verdict
        # in single-row updates of its own.
        result = credential_check(credential=credential, now=clock.now())
        credential.refresh_from_db()
        output = {"ok": result.ok, "message": result.message, "credential": credential}
        return Response(self.CheckOutput(output).data)

    @extend_schema(request=None, responses=MarksClearOutput)
    @action(
        detail=True,
        methods=["post"],
        url_path="clear-marks",
        required_permission="rotator.delete_mark",
    )
    def marks_clear(self, request: Request, pk: str) -> Response:
        """Clears every mark (all models, all reasons) of the credential, so selection may
        pick it again at once."""
        credential = self.get_object()
        with transaction.atomic():
            cleared = marks_clear(credential_ids=[credential.id])
        return Response(self.MarksClearOutput({"cleared": cleared}).data)

    @extend_schema(request=None, responses=QuotaOutput)
    @action(detail=True, methods=["post"], required_permission="accounts.change_credential")
    def quota(self, request: Request, pk: str) -> Response:
        """Reads a Gemini CLI OAuth account's remaining quota per model from Code Assist now,
        stores it (as the beat task does every QUOTA_FETCH_MINUTES) and returns it. API keys
        have no such endpoint: `ok` is false and /stat shows an estimate instead."""
        credential = self.get_object()
        # No transaction around it: it waits on the network; the core writes in its own.
        result = credential_quota_fetch(credential=credential, now=clock.now())
        readings = credential.quota_readings.filter(source=QuotaReading.Source.REPORTED)
        buckets = self.QuotaBucketOutput(readings.order_by("model"), many=True).data
        output = {"ok": result.ok, "message": result.message, "buckets": buckets}
        return Response(self.QuotaOutput(output).data)


# ---------------------------------------------------------------------------- model aliases


class ModelAliasViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ResourceViewSet):
    """Model aliases: a client model name, or a pattern with `*`, served by a Gemini model,
    for every user (no user) or for one. A change reaches every server process on its next
    request. Which alias wins: README, "Model aliases"."""

    permission_model = ModelAlias
    serializer_class = ModelAliasSerializer

    class FilterSerializer(serializers.Serializer[Any]):
        user = _id_field(required=False)
        is_global = serializers.BooleanField(
            required=False, help_text="true: only global aliases; false: only users' own."
        )
        target = serializers.CharField(required=False, max_length=128)
        ordering = serializers.ChoiceField(
            choices=_orderings("id", "name", "target", "updated_at"), required=False
        )

    class UpdateInput(serializers.Serializer[Any]):
        name = serializers.RegexField(
            ALIAS_NAME_PATTERN,
            max_length=128,
            required=False,
            help_text="The name clients send, or a pattern where `*` matches any run of "
            "characters (claude-*-sonnet-*).",
        )
        target = serializers.RegexField(
            MODEL_NAME_PATTERN,
            max_length=128,
            required=False,
            help_text="The Gemini model that serves it (gemini-2.5-pro).",
        )

    class CreateInput(UpdateInput):
        user = serializers.PrimaryKeyRelatedField(
            queryset=User.objects.all(),
            required=False,
            allow_null=True,
            help_text="The user whose alias this is; null or absent: a global alias.",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            missing = {name: ["This field is required."] for name in ("name", "target")}
            missing = {name: error for name, error in missing.items() if name not in attrs}
            if missing:
                raise serializers.ValidationError(missing)
            return attrs

    def get_queryset(self) -> Any:
        if self.action == "list":
            return api_selectors.aliases_list(**self.filters())
        return ModelAlias.objects.all()

    @extend_schema(request=CreateInput, responses={201: ModelAliasSerializer})
    def create(self, request: Request) -> Response:
        serializer = self.CreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        alias = ModelAlias(**serializer.validated_data)
        with transaction.atomic():
            # full_clean checks the per-user and global uniqueness (a 400, not a 500).
            alias.full_clean()
            alias.save()
        return Response(ModelAliasSerializer(alias).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UpdateInput, responses=ModelAliasSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        alias = self.get_object()
        serializer = self.UpdateInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        for name, value in serializer.validated_data.items():
            setattr(alias, name, value)
        with transaction.atomic():
            alias.full_clean()
            alias.save()
        return Response(ModelAliasSerializer(alias).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        alias = self.get_object()
        with transaction.atomic():
            alias.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------- marks


class MarkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ResourceViewSet):
    """Availability marks: a (credential, model) that selection skips until `until`. Clear
    them with POST /api/credentials/{id}/clear-marks/."""

    permission_model = Mark
    serializer_class = MarkSerializer

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

    def get_queryset(self) -> Any:
        if self.action == "list":
            return api_selectors.marks_list(**self.filters(), now=clock.now())
        return Mark.objects.select_related("credential")


# ---------------------------------------------------------------------------------- usage


class UsageViewSet(mixins.ListModelMixin, ResourceViewSet):
    """Usage sums between two quota days, grouped by any of day, user, api_key, credential and
    model (comma-separated `group_by`); without grouping, one row of totals. Counts reach the
    database within USAGE_FLUSH_SECONDS of each request."""

    permission_model = UsageCounter

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

    class Row(serializers.Serializer[Any]):
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
        model = serializers.CharField(required=False, help_text="The Gemini model called.")
        requested_model = serializers.CharField(
            required=False, help_text="The name the client asked for (an alias, or the model)."
        )
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

    serializer_class = Row

    class ExportInput(serializers.Serializer[Any]):
        since = serializers.DateField(
            required=False, help_text="First quota day, inclusive (default: 30 days back)."
        )
        until = serializers.DateField(
            required=False, help_text="Last quota day, inclusive (default: today)."
        )
        user = _id_field(required=False)

    def get_queryset(self) -> Any:
        return api_selectors.usage_summarize(**self.filters())

    @extend_schema(
        parameters=[ExportInput],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    @action(
        detail=False,
        methods=["get"],
        required_permission="stats.view_usagecounter",
        pagination_class=None,
    )
    def export(self, request: Request) -> HttpResponse:
        """Usage as CSV, one row per quota day, API key, credential and model (masked names),
        for every user or one (`user`). Counts reach the database within USAGE_FLUSH_SECONDS
        of each request; counters older than USAGE_RETENTION_DAYS are pruned."""
        # A plain dict, as the list filters take it: from a QueryDict DRF reads an empty
        # `since=` as absent, which the schema (a date) does not allow.
        serializer = self.ExportInput(data=request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        try:
            since, until = usage_range(
                since=serializer.validated_data.get("since"),
                until=serializer.validated_data.get("until"),
                today=clock.quota_day(clock.now()),
            )
        except ValueError as exc:
            raise exceptions.ValidationError({"until": [str(exc)]}) from exc
        csv_text = "".join(
            usage_csv(user_id=serializer.validated_data.get("user"), since=since, until=until)
        )
        response = HttpResponse(csv_text, content_type="text/csv; charset=utf-8")
        filename = usage_csv_filename(since=since, until=until)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


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
            api_key = api_key_by_secret(secret=value)
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
