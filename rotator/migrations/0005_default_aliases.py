"""Global aliases that let Claude Code run on Gemini; operators edit or delete them."""

from typing import Any

from django.db import migrations

# Patterns catch every dated and versioned Claude name (claude-sonnet-4-5-20250929,
# claude-3-5-haiku-20241022). Model lists show exact aliases only (a pattern names no model a
# client could pick): an operator who wants Claude Code's picker to offer names adds them.
DEFAULT_ALIASES = (
    ("claude-*-haiku-*", "gemini-2.5-flash"),
    ("claude-haiku-*", "gemini-2.5-flash"),
    ("claude-*-sonnet-*", "gemini-2.5-pro"),
    ("claude-sonnet-*", "gemini-2.5-pro"),
    ("claude-*-opus-*", "gemini-2.5-pro"),
    ("claude-opus-*", "gemini-2.5-pro"),
)


def aliases_add(apps: Any, schema_editor: Any) -> None:
    ModelAlias = apps.get_model("rotator", "ModelAlias")
    for name, target in DEFAULT_ALIASES:
        ModelAlias.objects.get_or_create(user=None, name=name, defaults={"target": target})


def aliases_remove(apps: Any, schema_editor: Any) -> None:
    ModelAlias = apps.get_model("rotator", "ModelAlias")
    for name, target in DEFAULT_ALIASES:
        ModelAlias.objects.filter(user=None, name=name, target=target).delete()


class Migration(migrations.Migration):
    dependencies = [("rotator", "0004_modelalias")]

    operations = [migrations.RunPython(aliases_add, aliases_remove)]
