"""Routes for the management API (/api/) and the config endpoints (/v1/config/*).

Resources in DRF's shape: the collection (`GET` lists, `POST` creates), the item (`GET`,
`PATCH`, `DELETE`), and operations that are not CRUD as actions (`POST .../{id}/check/`).
"""

from typing import Any

from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from api import views
from api.schema import DocsView, SchemaView, docs_asset


@extend_schema(exclude=True)
class ApiNotFound(APIView):
    """Unknown /api/ routes answer in JSON, not with Django's HTML page."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get_exception_handler(self) -> Any:
        return views.api_exception_handler

    def dispatch_not_found(self, request: Request, rest: str = "") -> None:
        raise NotFound(f"Unknown API route {request.path}; API routes end with a slash.")

    get = post = put = patch = delete = dispatch_not_found


router = SimpleRouter()
router.register("users", views.UserViewSet, basename="users")
router.register("keys", views.ApiKeyViewSet, basename="keys")
router.register("credentials", views.CredentialViewSet, basename="credentials")
router.register("aliases", views.ModelAliasViewSet, basename="aliases")
router.register("marks", views.MarkViewSet, basename="marks")
router.register("usage", views.UsageViewSet, basename="usage")

urlpatterns = [
    path("v1/config/update", views.ConfigUpdateApi.as_view()),
    path("v1/config/rotate", views.ConfigRotateApi.as_view()),
    path("api/", include(router.urls)),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", DocsView.as_view(), name="api-docs"),
    path("api/docs/assets/<path:path>", docs_asset, name="api-docs-asset"),
    # [\s\S], not ".": decoded paths may hold newlines, which would reach Django's HTML 404.
    re_path(r"^api/(?P<rest>[\s\S]*)$", ApiNotFound.as_view()),
]
