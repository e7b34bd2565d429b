"""Routes for /stat and friends (filled in by the stats issue)."""

urlpatterns: list[object] = []
