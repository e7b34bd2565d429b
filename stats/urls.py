"""Routes for /stat, its JSON and sign-in, /debug/stats and /metrics (included at the root)."""

from django.urls import path

from stats import views

urlpatterns = [
    path("stat", views.stat_page, name="stat"),
    path("stat/", views.stat_page),
    path("stat/data.json", views.stat_data, name="stat-data"),
    path("stat/usage.csv", views.stat_usage_csv, name="stat-usage-csv"),
    path("stat/signin", views.stat_signin, name="stat-signin"),
    path("stat/signout", views.stat_signout, name="stat-signout"),
    path("debug/stats", views.debug_stats, name="debug-stats"),
    path("metrics", views.metrics, name="metrics"),
]
