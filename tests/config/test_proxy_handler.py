"""The proxy routes' own ASGI handler (config.asgi.ProxyASGIHandler.handle) keeps what
Django's handler promises: the whole body reaches the view, and request_started /
request_finished fire once around every request, a stream the client leaves included."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from django.core import signals

from tests.support.clients import chat_post, chat_stream_left_after_first_event


@pytest.fixture
def request_signals() -> Iterator[list[str]]:
    """The names of the request signals the server sent, in order."""
    sent: list[str] = []
    lock = threading.Lock()

    def started(**_: object) -> None:
        with lock:
            sent.append("started")

    def finished(**_: object) -> None:
        with lock:
            sent.append("finished")

    signals.request_started.connect(started, weak=False)
    signals.request_finished.connect(finished, weak=False)
    yield sent
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


def _settled(sent: list[str], count: int) -> list[str]:
    deadline = time.monotonic() + 20  # a bound under load, not a wait
    while len(sent) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(sent)


def test_a_body_sent_in_pieces_reaches_the_view_whole(live, alice, fake_gemini):
    body = json.dumps(
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "in pieces"}]}
    ).encode()
    pieces = [body[:10], body[10:25], body[25:]]
    url = urlsplit(live)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {alice.key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head)
        for piece in pieces:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            time.sleep(0.05)  # separate reads, so separate ASGI messages
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    [upstream] = fake_gemini.requests
    assert upstream.body["messages"] == [{"role": "user", "content": "in pieces"}]


def test_the_request_signals_fire_once_around_an_answer(live, alice, request_signals):
    assert chat_post(live, alice.key).status_code == 200
    assert _settled(request_signals, 2) == ["started", "finished"]


def test_the_request_signals_fire_once_around_a_stream_the_client_leaves(
    live, alice, fake_gemini, request_signals
):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "ok", chunks=20, chunk_delay=0.3)
    chat_stream_left_after_first_event(live, alice.key)
    assert _settled(request_signals, 2) == ["started", "finished"]
    time.sleep(0.3)  # one more upstream chunk: nothing fires twice
    assert request_signals == ["started", "finished"]


def test_a_client_that_leaves_before_its_body_is_complete_gets_nothing_and_costs_nothing(
    live, alice, fake_gemini, request_signals
):
    url = urlsplit(live)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {alice.key}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + b'{"model": ')
        time.sleep(0.1)
    # The server is still well, and the abandoned request never reached a view or upstream.
    assert chat_post(live, alice.key).status_code == 200
    assert len(fake_gemini.requests) == 1
    assert _settled(request_signals, 2) == ["started", "finished"]


def test_the_request_signals_fire_once_when_the_client_leaves_before_the_answer(
    live, alice, fake_gemini, request_signals
):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "timeout", seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        chat_post(live, alice.key, timeout=httpx.Timeout(10, read=0.5))
    # The view is cancelled while it waits for upstream; the request still ends properly.
    assert _settled(request_signals, 2) == ["started", "finished"]
