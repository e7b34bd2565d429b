"""Alerts: a signed webhook once per state change when a credential dies or a pool runs dry,
each delivery recorded; inline without a broker, retried with backoff by Celery."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from celery import current_app

from accounts.models import Credential
from common import clock
from rotator import alerts
from rotator.models import AlertDelivery
from tests.support.processes import database_url as support_database_url
from tests.support.receiver import WebhookReceiver

SECRET = "webhook-signing-secret-0001"
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def receiver(settings) -> Iterator[WebhookReceiver]:
    alerts.process_alerts_forget()
    with WebhookReceiver() as running:
        settings.ALERT_WEBHOOK_URL = running.url
        settings.ALERT_WEBHOOK_SECRET = SECRET
        settings.ALERT_WEBHOOK_FORMAT = "json"
        # No worker runs in tests: inline, as on a server without a broker.
        settings.ALERT_VIA_CELERY = False
        yield running
    alerts.process_alerts_forget()


def _signed_correctly(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["x-rotator-timestamp"].encode()
    expected = hmac.new(SECRET.encode(), timestamp + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-rotator-signature"], f"sha256={expected}")


def _only_first_enabled(persona) -> Credential:
    first, *others = persona.credentials
    Credential.objects.filter(id__in=[c.id for c in others]).update(enabled=False)
    return first


@pytest.mark.django_db(transaction=True)
def test_a_credential_google_refuses_sends_one_signed_alert(
    live, http, alice, receiver, fake_gemini
):
    first = alice.credentials[0]
    fake_gemini.behave(first.secret(), "invalid_key")
    headers = {"authorization": f"Bearer {alice.key}"}
    for _ in range(4):
        assert http.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 200

    (alert,) = receiver.received
    assert _signed_correctly(alert.headers, alert.body)
    payload = json.loads(alert.body)
    assert payload["event"] == "credential_invalid"
    assert payload["credential"] == {"id": first.id, "name": first.display_name}
    assert "API key not valid" in payload["message"]
    assert first.secret() not in alert.body.decode()
    delivery = AlertDelivery.objects.get()
    assert (delivery.outcome, delivery.attempts, delivery.response_status) == ("sent", 1, 200)


@pytest.mark.django_db(transaction=True)
def test_a_pool_with_no_usable_credential_for_a_model_alerts_once_not_per_request(
    live, http, alice, receiver, fake_gemini
):
    first = _only_first_enabled(alice)
    fake_gemini.behave(first.secret(), "quota_day", model="gemini-2.5-flash")
    headers = {"authorization": f"Bearer {alice.key}"}
    statuses = [
        http.post("/v1/chat/completions", headers=headers, json=CHAT).status_code for _ in range(5)
    ]
    assert statuses == [429] * 5
    (alert,) = receiver.received
    payload = json.loads(alert.body)
    assert (payload["event"], payload["model"]) == ("pool_empty", "gemini-2.5-flash")
    assert "until" in payload["message"]


def test_without_a_broker_a_failing_receiver_is_tried_once_inline_and_recorded(
    settings, alice, receiver
):
    receiver.statuses = [503]
    delivery = alerts.pool_empty_alert(
        user_id=alice.user.id, model="", version=1, back_at=None, now=clock.now()
    )
    assert delivery is not None
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.attempts, delivery.response_status) == ("failed", 1, 503)
    assert delivery.error == "receiver answered 503"
    # The same state again is not a new alert.
    assert (
        alerts.pool_empty_alert(
            user_id=alice.user.id, model="", version=1, back_at=None, now=clock.now()
        )
        is None
    )
    assert len(receiver.received) == 1


def test_celery_retries_a_failed_delivery_until_the_receiver_takes_it(settings, alice, receiver):
    receiver.statuses = [500, 502]
    settings.ALERT_VIA_CELERY = True
    current_app.conf.task_always_eager = True
    try:
        delivery = alerts.pool_empty_alert(
            user_id=alice.user.id, model="", version=7, back_at=None, now=clock.now()
        )
    finally:
        current_app.conf.task_always_eager = False
    assert delivery is not None
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.attempts, delivery.response_status) == ("sent", 3, 200)
    assert len(receiver.received) == 3
    # Each attempt is the same delivery, signed afresh.
    assert {r.headers["x-rotator-delivery"] for r in receiver.received} == {str(delivery.id)}
    assert all(_signed_correctly(r.headers, r.body) for r in receiver.received)


@pytest.mark.parametrize(("style", "field"), [("slack", "text"), ("discord", "content")])
def test_slack_and_discord_get_their_own_payload_shape(style, field):
    payload = {
        "event": "credential_suspended",
        "credential": {"id": 3, "name": "team (AIza…x9Qk)"},
        "model": "",
        "message": "Terms of Service",
    }
    body = json.loads(alerts.alert_body(payload=payload, style=style))
    assert body == {field: "Rotator: credential suspended (team (AIza…x9Qk)): Terms of Service"}


def test_no_alert_is_recorded_without_a_webhook(settings, alice):
    settings.ALERT_WEBHOOK_URL = ""
    assert (
        alerts.pool_empty_alert(
            user_id=alice.user.id, model="", version=1, back_at=None, now=clock.now()
        )
        is None
    )
    assert not AlertDelivery.objects.exists()


def test_the_admin_lists_deliveries_with_their_outcome(admin_client, alice, receiver):
    receiver.statuses = [500]
    alerts.pool_empty_alert(
        user_id=alice.user.id, model="", version=2, back_at=None, now=clock.now()
    )
    page = admin_client.get("/admin/rotator/alertdelivery/").content.decode()
    assert "No usable credential for a model" in page and "receiver answered 500" in page


def test_an_oauth_account_that_used_most_of_a_models_quota_alerts_once_per_reset(
    settings, receiver, fake_gemini
):
    from rotator.tasks import quotas_fetch_task
    from tests.rotator.test_oauth import oauth_persona, refresh_tokens

    settings.ALERT_QUOTA_USED_SHARE = 0.9
    olga = oauth_persona("olga", fake_gemini, project_id="olga-project")
    Credential.objects.filter(id=olga.credentials[0].id).update(oauth_project_id="olga-project")
    account = fake_gemini.oauth_account(refresh_tokens(olga)[0])
    account.requests_by_model["gemini-2.5-pro"] = 89
    quotas_fetch_task()
    assert receiver.received == []  # 89 of 100: under the share
    account.requests_by_model["gemini-2.5-pro"] = 91
    quotas_fetch_task()
    quotas_fetch_task()
    (alert,) = receiver.received
    payload = json.loads(alert.body)
    assert (payload["event"], payload["model"]) == ("quota_low", "gemini-2.5-pro")
    assert payload["message"].startswith("91% of the daily quota is used; it resets at ")


def test_a_celery_worker_on_the_redis_broker_retries_a_delivery_with_backoff(
    live, settings, alice, receiver
):
    """A real worker process, a real Redis broker: two refusals, then the receiver takes it."""
    from config.celery import app

    receiver.statuses = [500, 503]
    delivery = AlertDelivery.objects.create(
        event=AlertDelivery.Event.POOL_EMPTY,
        dedupe_key="worker-test",
        user=alice.user,
        payload={"event": "pool_empty", "credential": None, "model": "", "message": "dry"},
        created_at=clock.now(),
    )
    broker = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/15"
    queue = f"test-{settings.STATE_KEY_PREFIX}"
    env = {
        **os.environ,
        "DATABASE_URL": support_database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_BROKER_URL": broker,
        "ALERT_WEBHOOK_URL": receiver.url,
        "ALERT_WEBHOOK_SECRET": SECRET,
        "ALERT_RETRY_BASE_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
         "--queues", queue, "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip"],
        env=env, cwd=settings.BASE_DIR,
    )  # fmt: skip
    try:
        with app.connection_for_write(broker) as connection:
            app.send_task(
                "rotator.tasks.alert_deliver_task",
                args=[delivery.id],
                connection=connection,
                queue=queue,
            )
        deadline = time.monotonic() + 60
        while delivery.outcome != AlertDelivery.Outcome.SENT:
            assert time.monotonic() < deadline, f"not delivered: {delivery.error}"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.2)
            delivery.refresh_from_db()
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert delivery.attempts == 3 and len(receiver.received) == 3
    assert all(_signed_correctly(r.headers, r.body) for r in receiver.received)
