"""Routes for the management API (filled in by the management API issue)."""

urlpatterns: list[object] = []
