"""The email channel without SMTP (.eml files under the data dir), its API, and its renderer."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from broker import outbox
from broker.clock import Clock
from broker.mail import message as mime
from broker.mail import render
from broker.settings import Settings
from tests.mail_support import parts, wait_for
from tests.support import Api, next_grid_start


def emails(folder: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        parsed = message_from_bytes(path.read_bytes(), policy=email_policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


async def test_without_smtp_each_email_is_an_eml_file_and_the_log_says_where_by_id(
    api: Api, server: TestServer, settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="teleroom.mail")
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, booking = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={
            "session_type": session_type["id"],
            "start": start.isoformat(),
            "client": {"name": "Quin Rho", "email": "quin@example.org"},
        },
    )
    assert status == 201
    folder = settings.data_dir / "mail"
    await outbox.deliver_due(server.app)
    found = await wait_for(lambda: [m for m in emails(folder) if m["To"] == "quin@example.org"])
    [confirmation] = found
    assert f"#k={booking['booking_key']}" in parts(confirmation)["text/plain"].get_content()
    message_id = str(confirmation["Message-ID"]).strip("<>").split("@")[0]
    assert (folder / f"{message_id}.eml").exists()
    logged = caplog.text
    assert f"message {message_id} (client.confirmation) written to {folder}" in logged
    assert "quin@example.org" not in logged and "Quin" not in logged


async def test_a_new_therapist_is_emailed_the_invite_link_in_its_fragment(
    api: Api, server: TestServer, settings: Settings
) -> None:
    therapist = await api.therapist()
    await outbox.deliver_due(server.app)
    [invite] = await wait_for(lambda: [m for m in emails(settings.data_dir / "mail") if m["To"] == therapist["email"]])
    assert invite["Subject"] == "Choose your password"
    assert therapist["invite_url"] in parts(invite)["text/plain"].get_content()
    assert "/invite#t=tri_" in therapist["invite_url"]


async def test_notification_preferences_are_read_and_changed_and_checked(api: Api) -> None:
    therapist = await api.therapist()
    path = f"/api/v1/therapists/{therapist['slug']}/notifications"
    token = therapist["api_token"]
    status, body = await api.call("GET", path, token=token)
    assert (status, body) == (200, {"notify_bookings": False, "notice_detail": "busy", "email_session_type": False})
    wanted = {"notify_bookings": True, "notice_detail": "initials", "email_session_type": True}
    assert await api.call("PUT", path, token=token, json=wanted) == (200, wanted)
    assert await api.call("GET", path, token=token) == (200, wanted)
    status, problem = await api.call("PUT", path, token=token, json={**wanted, "notice_detail": "everything"})
    assert (status, problem["code"]) == (422, "invalid_input")
    status, problem = await api.call("PUT", path, token=token, json={"notify_bookings": True})
    assert status == 422


async def test_every_template_previews_and_an_unknown_one_is_404(api: Api) -> None:
    therapist = await api.therapist()
    base = f"/api/v1/therapists/{therapist['slug']}/email-previews"
    status, listed = await api.call("GET", base, token=therapist["api_token"])
    assert status == 200 and set(listed["templates"]) >= {
        "confirmation",
        "series_confirmation",
        "rescheduled",
        "cancelled",
        "reminder",
        "confidential",
        "password_invite",
        "password_reset",
        "therapist_notice",
    }
    for name in listed["templates"]:
        status, shown = await api.call("GET", f"{base}/{name}", token=therapist["api_token"])
        assert status == 200 and shown["template"] == name
        assert shown["subject"] and "\n" not in shown["subject"] and shown["text"] and "<html" in shown["html"]
    status, problem = await api.call("GET", f"{base}/nope", token=therapist["api_token"])
    assert (status, problem["code"]) == (404, "template_unknown")


async def test_messages_list_filters_by_state_and_refuses_an_unknown_one(api: Api, server: TestServer) -> None:
    therapist = await api.therapist()
    path = f"/api/v1/therapists/{therapist['slug']}/messages"
    status, pending = await api.call("GET", path + "?state=pending", token=therapist["api_token"])
    assert status == 200 and [m["kind"] for m in pending] == ["password.invite"]
    assert set(pending[0]) == {
        "id", "channel", "kind", "recipient", "state", "due_at", "created_at", "attempts",
        "last_attempt_at", "last_status", "last_error", "booking_id",
    }  # fmt: skip
    await outbox.deliver_due(server.app)
    status, delivered = await api.call("GET", path + "?state=delivered", token=therapist["api_token"])
    assert status == 200 and [m["id"] for m in delivered] == [pending[0]["id"]]
    status, problem = await api.call("GET", path + "?state=lost", token=therapist["api_token"])
    assert (status, problem["code"]) == (422, "invalid_input")


async def test_reminder_minutes_on_session_types_and_confidential_messages_on_clients(api: Api) -> None:
    therapist = await api.therapist()
    token = therapist["api_token"]
    created = await api.session_type(therapist, reminder_minutes=[30, 2880, 30])
    assert created["reminder_minutes"] == [2880, 30]
    assert (await api.session_type(therapist))["reminder_minutes"] == [1440, 60]
    base = f"/api/v1/therapists/{therapist['slug']}/session-types"
    status, _ = await api.call(
        "POST", base, token=token, json={"name": "x", "duration_minutes": 50, "reminder_minutes": [1] * 6}
    )
    assert status == 422
    status, _ = await api.call(
        "POST", base, token=token, json={"name": "x", "duration_minutes": 50, "reminder_minutes": [20161]}
    )
    assert status == 422
    status, changed = await api.call(
        "PUT", f"{base}/{created['id']}/reminders", token=token, json={"reminder_minutes": []}
    )
    assert (status, changed["reminder_minutes"]) == (200, [])
    status, _ = await api.call(
        "PUT", f"{base}/00000000-0000-4000-8000-000000000000/reminders", token=token, json={"reminder_minutes": [60]}
    )
    assert status == 404

    await api.availability(therapist)
    start = next_grid_start(dt.datetime.now(dt.UTC) + dt.timedelta(days=2), 60)
    for confidential in (True, False):  # asking once is enough; a later booking does not undo it
        status, _ = await api.call(
            "POST",
            f"/api/v1/therapists/{therapist['slug']}/bookings",
            json={
                "session_type": created["id"],
                "start": (start + dt.timedelta(hours=2 * confidential)).isoformat(),
                "client": {"name": "Ola", "email": "ola@example.org"},
                "confidential_messages": confidential,
            },
        )
        assert status == 201
    status, listed = await api.call("GET", f"/api/v1/therapists/{therapist['slug']}/clients", token=token)
    [client] = listed["clients"]
    path = f"/api/v1/therapists/{therapist['slug']}/clients/{client['id']}"
    status, record = await api.call("GET", path, token=token)
    assert record["confidential_messages"] is True
    status, record = await api.call("PATCH", path, token=token, json={"confidential_messages": False})
    assert (status, record["confidential_messages"]) == (200, False)


# --- the renderer, without a server -------------------------------------------------------------


def test_html_is_escaped_and_text_is_not() -> None:
    mail = render.Cancelled(
        sessions=[
            render.Appointment(
                start=dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC),
                end=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC),
                zone="Europe/Berlin",
                therapist_name="Dr <b>Bold</b> & Co",
            )
        ],
        by_therapist=True,
    )
    shown = render.render(mail)
    assert "Dr &lt;b&gt;Bold&lt;/b&gt; &amp; Co" in shown.html and "<b>Bold" not in shown.html
    assert "Dr <b>Bold</b> & Co" in shown.text
    assert shown.subject == "Your appointment on Tue 1 Dec at 10:00 CET is cancelled"


def test_tiers_name_the_client_as_chosen() -> None:
    assert render.client_label("Jane Mary Doe", "busy") is None
    assert render.client_label("Jane Mary Doe", "initials") == "J. D."
    assert render.client_label("Jane Mary Doe", "full") == "Jane Mary Doe"


def test_a_header_cannot_be_injected() -> None:
    shown = render.RenderedMail(template="x", subject="Hi\r\nBcc: victim@example.org", text="t", html="<p>h</p>")
    with pytest.raises(ValueError, match="linefeed"):
        mime.build(
            shown,
            sender="Appointments <a@example.org>",
            to="b@example.org",
            outbox_id=uuid.uuid4(),
            origin="https://t.example.org",
            date=dt.datetime.now(dt.UTC),
        )


def test_every_template_renders_its_sample_without_contact_details() -> None:
    for name in render.TEMPLATES:
        shown = render.preview(name)
        assert "@" not in shown.subject + shown.text, name
        assert shown.text.endswith("\n") and "\n\n\n" not in shown.text


def test_a_zone_without_an_abbreviation_is_shown_as_an_offset() -> None:
    start = dt.datetime(2026, 12, 1, 13, tzinfo=dt.UTC)
    assert render.when(start, "America/Sao_Paulo") == "Tue 1 Dec at 10:00 UTC-03:00"
    assert render.when(start, "Asia/Kolkata") == "Tue 1 Dec at 18:30 IST"
