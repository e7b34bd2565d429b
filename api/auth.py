"""Who may use the management API: the master key, or a user with the operation's permission."""

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import BasePermission

from accounts.secrets import secret_equals
from common.naming import bearer_token

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while rest_framework.views is half loaded.
    from rest_framework.request import Request
    from rest_framework.views import APIView

MASTER_KEY_NOT_CONFIGURED = (
    "MASTER_API_KEY is not configured on this server, so master-key access is off; "
    "set MASTER_API_KEY to enable it."
)


class MasterKey:
    """`request.auth` of a caller who presented MASTER_API_KEY. It belongs to no Django user,
    so `request.user` stays anonymous and nothing can mistake it for a staff login."""

    def __repr__(self) -> str:
        return "MasterKey()"


MASTER_KEY = MasterKey()


class MasterKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <MASTER_API_KEY>`.

    Any Bearer header is taken as a claim to the master key (DRF tokens use `Token ...`), so a
    wrong one is refused outright instead of falling through to other schemes. Error messages
    never repeat what was presented.
    """

    def authenticate(self, request: "Request") -> tuple[AnonymousUser, MasterKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.strip().partition(" ")[0].lower() != "bearer":
            return None
        presented = bearer_token(header) or ""
        expected = settings.MASTER_API_KEY
        if not expected:
            raise PermissionDenied(MASTER_KEY_NOT_CONFIGURED)
        if not secret_equals(presented.strip(), expected):
            raise AuthenticationFailed("Invalid master key.")
        return AnonymousUser(), MASTER_KEY

    def authenticate_header(self, request: "Request") -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="rotator"'


def is_master(request: "Request") -> bool:
    return isinstance(request.auth, MasterKey)


# The model permission each standard ViewSet action needs; actions declare their own.
ACTION_PERMISSIONS = {
    "list": "view",
    "retrieve": "view",
    "metadata": "view",
    "create": "add",
    "partial_update": "change",
    "update": "change",
    "destroy": "delete",
}


def permission_required(view: "APIView") -> str | None:
    """The Django permission (`app_label.codename`) the operation `view` is about to run
    needs: the action's own `required_permission`, else the one ACTION_PERMISSIONS names on
    the view's `permission_model`. None for an operation without one."""
    explicit = getattr(view, "required_permission", None)
    if explicit:
        return str(explicit)
    verb = ACTION_PERMISSIONS.get(getattr(view, "action", None) or "")
    model = getattr(view, "permission_model", None)
    if verb is None or model is None:
        return None
    return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"


class ModelPermission(BasePermission):
    """The master key may do anything. Anyone else must be an active user (signed in by
    session or DRF token) holding the Django model permission of the operation
    (`permission_required`), as the admin would demand; being staff alone grants nothing."""

    message = "Send the master key as a Bearer token, or sign in as a user with permission."

    def has_permission(self, request: "Request", view: "APIView") -> bool:
        if is_master(request):
            return True
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if getattr(view, "action", "") is None:
            # A method this route does not serve: DRF answers 405 next.
            return True
        needed = permission_required(view)
        if needed is None:
            # Fail closed: an operation nobody declared a permission for is master-key only.
            self.message = "This operation is open to the master key only."
            return False
        if user.has_perm(needed):
            return True
        self.message = f"This operation needs the permission {needed}."
        return False


class IsMasterKey(BasePermission):
    """The master key only: the config endpoints of the system we replace."""

    message = "Send the master key as a Bearer token."

    def has_permission(self, request: "Request", view: "APIView") -> bool:
        if not settings.MASTER_API_KEY:
            raise PermissionDenied(MASTER_KEY_NOT_CONFIGURED)
        return is_master(request)
