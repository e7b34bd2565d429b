"""Routes for the management API (/api/) and the config endpoints (/v1/config/*).

One route per operation: reads at the resource, each change at its own verb
(`/api/credentials/<id>/disable/`), always POST.
"""

from django.urls import path, re_path
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request

from api import views as api
from api.schema import DocsView, SchemaView, docs_asset


@extend_schema(exclude=True)
class ApiNotFound(api.OperatorApi):
    """Unknown /api/ routes answer in JSON, not with Django's HTML page."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def dispatch_not_found(self, request: Request, rest: str = "") -> None:
        raise NotFound(f"Unknown API route {request.path}; API routes end with a slash.")

    get = post = put = patch = delete = dispatch_not_found


urlpatterns = [
    path("v1/config/update", api.ConfigUpdateApi.as_view()),
    path("v1/config/rotate", api.ConfigRotateApi.as_view()),
    path("api/users/", api.UserListApi.as_view()),
    path("api/users/create/", api.UserCreateApi.as_view()),
    path("api/users/<int:pk>/", api.UserDetailApi.as_view()),
    path("api/keys/", api.ApiKeyListApi.as_view()),
    path("api/keys/create/", api.ApiKeyCreateApi.as_view()),
    path("api/keys/<int:pk>/", api.ApiKeyDetailApi.as_view()),
    path("api/keys/<int:pk>/revoke/", api.ApiKeyRevokeApi.as_view()),
    path("api/credentials/", api.CredentialListApi.as_view()),
    path("api/credentials/create/", api.CredentialCreateApi.as_view()),
    path("api/credentials/<int:pk>/", api.CredentialDetailApi.as_view()),
    path("api/credentials/<int:pk>/enable/", api.CredentialEnableApi.as_view()),
    path("api/credentials/<int:pk>/disable/", api.CredentialDisableApi.as_view()),
    path("api/credentials/<int:pk>/check/", api.CredentialCheckApi.as_view()),
    path("api/credentials/<int:pk>/delete/", api.CredentialDeleteApi.as_view()),
    path("api/marks/", api.MarkListApi.as_view()),
    path("api/marks/clear/", api.MarkClearApi.as_view()),
    path("api/usage/", api.UsageListApi.as_view()),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", DocsView.as_view(), name="api-docs"),
    path("api/docs/assets/<path:path>", docs_asset, name="api-docs-asset"),
    # [\s\S], not ".": decoded paths may hold newlines, which would reach Django's HTML 404.
    re_path(r"^api/(?P<rest>[\s\S]*)$", ApiNotFound.as_view()),
]
