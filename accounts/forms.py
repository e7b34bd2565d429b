"""Admin forms for keys and credentials; every secret field is write-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from accounts.models import ApiKey, Credential, proxy_url_validate
from accounts.services import oauth_account_parse

OAUTH_WARNING = (
    "Google restricts third-party use of Gemini CLI sign-in: individual sign-in ended in "
    "June 2026 (Code Assist Standard and Enterprise licences remain), and Google may suspend "
    "accounts used this way. Such suspensions are permanent."
)


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, so a form shown again after an error does not
    echo the pasted secret back into the page."""

    def format_value(self, value: Any) -> None:
        return None


class WriteOnlyInput(forms.PasswordInput):
    """A one-line secret field; PasswordInput already drops its value on re-display."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"autocomplete": "off", **(attrs or {})}, render_value=False)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several uploaded files at once (Django's FileField takes one)."""

    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile[Any]]:
        files = data if isinstance(data, list | tuple) else [data]
        cleaned = []
        for upload in files:
            if upload:
                cleaned.append(super().clean(upload, initial))
        return cleaned


class ModelNamesField(forms.Field):
    """A list of model names typed as 'gemini-2.5-pro, gemini-2.5-flash'; empty means all."""

    widget = forms.TextInput

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        return [part.strip() for part in str(value or "").split(",") if part.strip()]

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return value


def _users() -> Any:
    return get_user_model().objects.order_by("username")


class ApiKeyCreateForm(forms.Form):
    """A new Rotator API key; the secret it gets is shown once on the next page."""

    user = forms.ModelChoiceField(queryset=_users())
    name = forms.CharField(max_length=100, required=False)
    secret = forms.CharField(
        required=False,
        widget=WriteOnlyInput(),
        label="Existing key",
        help_text="Only to register a key clients already use; leave empty to generate one.",
    )
    expires_at = forms.DateTimeField(
        required=False, help_text="UTC, e.g. 2026-12-31 23:59. Empty: never expires."
    )
    allowed_models = ModelNamesField(
        required=False, help_text="Comma-separated model names; empty allows every model."
    )
    requests_per_minute = forms.IntegerField(required=False, min_value=1)
    requests_per_day = forms.IntegerField(required=False, min_value=1)

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "user": data["user"],
            "name": data["name"],
            "secret": data["secret"] or None,
            "expires_at": data["expires_at"],
            "allowed_models": data["allowed_models"],
            "requests_per_minute": data["requests_per_minute"],
            "requests_per_day": data["requests_per_day"],
        }


class ApiKeyChangeForm(forms.ModelForm):  # type: ignore[type-arg]
    allowed_models = ModelNamesField(
        required=False, help_text="Comma-separated model names; empty allows every model."
    )

    class Meta:
        model = ApiKey
        fields = ["name", "expires_at", "allowed_models", "requests_per_minute", "requests_per_day"]


class EgressProxyFields(forms.Form):
    """The egress proxy of a change form: write-only, like a secret (credentials, pools)."""

    proxy_url = forms.CharField(
        required=False,
        strip=True,
        label="New egress proxy URL",
        widget=WriteOnlyInput(),
        help_text="http://host:3128 or socks5://user:password@host:1080. Empty keeps the "
        "current one.",
    )
    proxy_clear = forms.BooleanField(required=False, label="Remove the egress proxy")

    def clean_proxy_url(self) -> str:
        url = str(self.cleaned_data.get("proxy_url") or "")
        if url:
            proxy_url_validate(url)
        return url

    def proxy_requested(self) -> str | None:
        """The proxy to set ("" removes it), or None when the operator left it as it is."""
        url = str(self.cleaned_data.get("proxy_url") or "")
        if not url and not self.cleaned_data.get("proxy_clear"):
            return None
        return url


class CredentialChangeForm(EgressProxyFields, forms.ModelForm):  # type: ignore[type-arg]
    """The change form, plus the egress proxy: write-only, like a secret."""

    class Meta:
        model = Credential
        fields = ["label", "project_label", "enabled", "position"]

    def proxy_changes(self) -> list[str]:
        """Applies the proxy fields to the instance; returns the model fields they changed."""
        url = self.proxy_requested()
        if url is None:
            return []
        self.instance.proxy_url_set(url)
        return ["proxy_url_encrypted", "proxy_url_mask"]


class CredentialAddForm(forms.Form):
    """One credential for a user's pool: a Gemini API key, or a Gemini CLI oauth_creds.json."""

    user = forms.ModelChoiceField(queryset=_users())
    kind = forms.ChoiceField(choices=Credential.Kind.choices)
    label = forms.CharField(max_length=200, required=False)
    project_label = forms.CharField(
        max_length=100,
        required=False,
        help_text="Google Cloud project this credential bills to; credentials with the same "
        "label share quota marks.",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="The Gemini API key, or the OAuth JSON (oauth_creds.json). Never shown again.",
    )
    oauth_file = forms.FileField(required=False, label="or OAuth JSON file")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        upload = data.get("oauth_file")
        if upload is not None:
            if data.get("kind") != Credential.Kind.GEMINI_OAUTH:
                raise ValidationError("A file can only hold an OAuth account; pick that kind.")
            data["secret"] = upload_text(upload)
        if not (data.get("secret") or "").strip():
            raise ValidationError("Paste the API key or OAuth JSON, or upload the JSON file.")
        return data

    def service_arguments(self) -> dict[str, Any]:
        """Arguments for credential_add; raises ValidationError for unreadable OAuth JSON."""
        data = self.cleaned_data
        arguments: dict[str, Any] = {
            "user": data["user"],
            "label": data["label"],
            "project_label": data["project_label"],
        }
        if data["kind"] == Credential.Kind.GEMINI_OAUTH:
            arguments["oauth"] = oauth_account_parse(data["secret"])
        else:
            arguments["api_key"] = data["secret"]
        return arguments


class CredentialImportForm(forms.Form):
    """Many credentials at once: pasted text and/or uploaded files."""

    user = forms.ModelChoiceField(queryset=_users())
    text = forms.CharField(
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 10, "autocomplete": "off"}),
        label="Paste",
        help_text="Gemini API keys, one a line (lines starting with # are skipped), or OAuth "
        "JSON: one object or an array of them.",
    )
    uploads = MultipleFileField(
        required=False,
        label="or upload files",
        help_text="Text files of API keys, or OAuth JSON files (several at once).",
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not (data.get("text") or "").strip() and not data.get("uploads"):
            raise ValidationError("Paste credentials or choose at least one file.")
        return data

    def sources(self) -> list[tuple[str, str | None]]:
        """(where from, text) for the pasted text and each file; text is None when a file is
        not UTF-8."""
        found: list[tuple[str, str | None]] = []
        if (self.cleaned_data.get("text") or "").strip():
            found.append(("pasted text", self.cleaned_data["text"]))
        for upload in self.cleaned_data.get("uploads") or []:
            try:
                found.append((f"file {upload.name}", upload_text(upload)))
            except ValidationError:
                found.append((f"file {upload.name}", None))
        return found


def upload_text(upload: UploadedFile[Any]) -> str:
    """The file's content as text; raises ValidationError when it is not UTF-8."""
    try:
        return str(upload.read().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValidationError(f"{upload.name} is not UTF-8 text.") from None
