"""Routes: the proxy dialects, operator pages and the management API."""

from django.contrib import admin
from django.urls import include, path, re_path

from config.views import landing
from rotator import views

proxy_patterns = [
    path("v1/chat/completions", views.chat_completions),
    path("chat/completions", views.chat_completions),
    path("v1/messages", views.anthropic_messages_create),
    path("messages", views.anthropic_messages_create),
    path("v1/messages/count_tokens", views.anthropic_count_tokens),
    path("messages/count_tokens", views.anthropic_count_tokens),
    path("v1/responses", views.responses_create),
    path("responses", views.responses_create),
    path("v1/responses/<str:response_id>", views.response_retrieve),
    path("responses/<str:response_id>", views.response_retrieve),
    path("v1/embeddings", views.embeddings),
    path("embeddings", views.embeddings),
    path("v1/models", views.v1_models),
    path("models", views.openai_models),
    path("v1/models/<str:model>", views.v1_model),
    path("models/<str:model>", views.openai_model),
    path("v1beta/models", views.gemini_models),
    path("v1beta/models/<str:target>", views.gemini_model),
    path("healthz", views.healthz),
]

urlpatterns = [
    *proxy_patterns,
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("", include("stats.urls")),
    path("", include("api.urls")),
    # Anything else under the proxy prefixes answers in the dialect, never an HTML page.
    re_path(r"^v1beta/(?P<rest>.*)$", views.gemini_not_found),
    re_path(r"^v1/(?P<rest>.*)$", views.openai_not_found),
]
