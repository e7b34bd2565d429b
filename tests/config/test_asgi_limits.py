"""Request bodies are bounded in size and time before Django reads them, on every route."""

import socket
import time
from urllib.parse import urlsplit

import pytest

ROUTES = ["/v1/chat/completions", "/v1beta/models/gemini-2.5-flash:generateContent", "/stat/signin"]


def _connect(live: str) -> socket.socket:
    url = urlsplit(live)
    sock = socket.create_connection((url.hostname, url.port), timeout=5)
    return sock


def _head(path: str, *, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(sock: socket.socket) -> int:
    """The status code of the response on `sock` (raises socket.timeout if none comes)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed without a response: {data!r}")
        data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ROUTES)
def test_a_declared_length_over_the_limit_is_refused_before_any_body_is_sent(live, settings, path):
    settings.MAX_REQUEST_BYTES = 4096
    with _connect(live) as sock:
        sock.sendall(_head(path, headers={"Content-Length": str(30 * 1024 * 1024)}))
        assert _status(sock) == 413


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ROUTES)
def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(live, settings, path):
    settings.MAX_REQUEST_BYTES = 64 * 1024
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with _connect(live) as sock:
        sock.sendall(_head(path, headers={"Transfer-Encoding": "chunked"}))
        sock.settimeout(1)
        try:
            # 64 MB offered; the server stops reading after the first 64 KB past the limit.
            for _ in range(1024):
                sock.sendall(frame)
                sent += len(chunk)
        except OSError:
            pass
        sock.settimeout(5)
        assert _status(sock) == 413
    assert sent < 32 * 1024 * 1024, "the server read the whole body before refusing it"


@pytest.mark.django_db(transaction=True)
def test_slow_bodies_are_refused_after_the_body_timeout(live, settings):
    settings.REQUEST_BODY_TIMEOUT_SECONDS = 0.5
    started = time.monotonic()
    sockets = [_connect(live) for _ in range(4)]
    try:
        for sock in sockets:
            sock.sendall(_head("/v1/chat/completions", headers={"Content-Length": "1000"}))
            sock.sendall(b'{"model": ')
        assert [_status(sock) for sock in sockets] == [408] * 4
    finally:
        for sock in sockets:
            sock.close()
    assert time.monotonic() - started < 4


@pytest.mark.django_db(transaction=True)
def test_the_admin_import_has_its_own_larger_limit(live, settings):
    settings.MAX_REQUEST_BYTES = 4096
    settings.MAX_IMPORT_BYTES = 1024 * 1024
    body = b"k" * 100_000
    with _connect(live) as sock:
        sock.sendall(_head(settings.IMPORT_PATH, headers={"Content-Length": str(len(body))}) + body)
        # Read whole and handed to Django, which refuses a form without its CSRF cookie.
        assert _status(sock) == 403
    with _connect(live) as sock:
        sock.sendall(_head(settings.IMPORT_PATH, headers={"Content-Length": str(2 * 1024 * 1024)}))
        assert _status(sock) == 413


def test_the_refusal_is_in_the_routes_dialect(http, settings):
    settings.MAX_REQUEST_BYTES = 2048
    body = b"{" + b" " * 4096 + b"}"
    openai = http.post("/v1/chat/completions", content=body)
    gemini = http.post("/v1beta/models/gemini-2.5-flash:generateContent", content=body)
    assert openai.status_code == gemini.status_code == 413
    assert openai.json()["error"]["code"] == "too_large"
    assert gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
