"""Email over a real SMTP server in the test process (aiosmtpd): STARTTLS against a throwaway CA,
and a plain relay. Messages are parsed with the standard library, the .ics with icalendar, and
every subject and body is searched for what must not be there."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import icalendar
import pytest
from aiohttp.test_utils import TestServer

from broker import outbox
from broker.clock import Clock
from broker.mail.smtp import MailSender
from broker.outbox import SENDERS
from broker.settings import Settings
from tests.mail_support import SmtpServer, everything, parts, smtp_server, throwaway_ca, wait_for
from tests.support import Api, next_grid_start

CLIENT = {"name": "Zelda Quux", "email": "zelda.quux@example.org", "phone": "+49 30 1234567"}


@pytest.fixture(params=["starttls", "plain"])
def smtp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SmtpServer, Path | None]]:
    tls = throwaway_ca(tmp_path / "tls") if request.param == "starttls" else None
    with smtp_server(tls) as srv:
        yield srv, (tls.ca_file if tls else None)


@pytest.fixture
def settings(settings: Settings, smtp: tuple[SmtpServer, Path | None]) -> Settings:
    srv, ca_file = smtp
    return dataclasses.replace(settings, smtp_url=srv.url, smtp_ca_file=ca_file, public_origin="https://tr.example.org")


@pytest.fixture
def inbox(smtp: tuple[SmtpServer, Path | None]) -> Any:
    return smtp[0].inbox


async def book(
    api: Api, therapist: dict[str, Any], session_type: dict[str, Any], start: dt.datetime, **extra: Any
) -> dict[str, Any]:
    client = {**CLIENT, **extra.pop("client", {})}
    status, body = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/bookings",
        json={"session_type": session_type["id"], "start": start.isoformat(), "client": client, **extra},
    )
    assert status == 201, body
    return dict(body)


def assert_discreet(text: str, *, name_allowed: bool = False) -> None:
    """No email address or phone number of the client, and no name unless allowed."""
    assert CLIENT["email"] not in text
    assert CLIENT["phone"] not in text and "1234567" not in text
    if not name_allowed:
        assert "Zelda" not in text and "Quux" not in text


async def test_a_confirmation_arrives_with_headers_parts_and_calendar_and_nothing_it_must_not_say(
    api: Api, server: TestServer, inbox: Any, clock: Clock, db: asyncpg.Connection, smtp: Any
) -> None:
    therapist, session_type = await api.ready_therapist(name="Trauma therapy")
    start = next_grid_start(clock.now() + dt.timedelta(days=3), 60)
    booking = await book(api, therapist, session_type, start, client_timezone="America/New_York")
    [message] = await wait_for(lambda: inbox.to(CLIENT["email"]), what="the confirmation")

    [row] = [m for m in await outbox.for_booking(db, uuid.UUID(booking["id"])) if m.kind == "client.confirmation"]
    assert message["Message-ID"] == f"<{row.id}@tr.example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None and message["From"] == "Appointments <appointments@localhost>"
    local = start.astimezone(ZoneInfo("America/New_York"))
    assert str(message["Subject"]).startswith(f"Your appointment on {local:%a} {local.day} {local:%b} at {local:%H:%M}")
    found = parts(message)
    assert set(found) == {"text/plain", "text/html", "text/calendar"}
    calendar = found["text/calendar"]
    assert calendar.get_param("method") == "PUBLISH"
    ics = icalendar.Calendar.from_ical(calendar.get_content())
    assert ics["METHOD"] == "PUBLISH"
    [event] = ics.walk("VEVENT")
    assert event.decoded("dtstart") == start and str(event["summary"]) == "Appointment with Dr Ada Example"

    text = found["text/plain"].get_content()
    assert f"/manage/{booking['id']}#k={booking['booking_key']}" in text
    assert "America/New_York" in text
    for content in (everything(message),):
        assert_discreet(content)
        assert "Trauma" not in content  # the session type, unless the therapist lets emails name it
    if smtp[1] is not None:  # STARTTLS: the server refused anything before TLS, so this came encrypted
        assert server.app[SENDERS]["email"].connections.target.starttls  # type: ignore[attr-defined]

    # The therapist lets emails name the session type: the next booking's email does.
    status, _ = await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/notifications",
        token=therapist["api_token"],
        json={"notify_bookings": False, "notice_detail": "busy", "email_session_type": True},
    )
    assert status == 200
    await book(api, therapist, session_type, start + dt.timedelta(hours=2), client={"email": "second@example.org"})
    [named] = await wait_for(lambda: inbox.to("second@example.org"))
    assert "Trauma therapy" in parts(named)["text/plain"].get_content()


async def test_a_reminder_arrives_when_the_clock_reaches_it_and_not_after_a_cancellation(
    api: Api, server: TestServer, inbox: Any, clock: Clock, db: asyncpg.Connection
) -> None:
    therapist, session_type = await api.ready_therapist(reminder_minutes=[60])
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    kept = await book(api, therapist, session_type, start, client={"email": "kept@example.org"})
    dropped = await book(
        api, therapist, session_type, start + dt.timedelta(hours=1), client={"email": "dropped@example.org"}
    )
    await wait_for(lambda: inbox.to("kept@example.org") and inbox.to("dropped@example.org"))
    status, _ = await api.call("POST", f"/api/v1/bookings/{dropped['id']}/cancel", token=dropped["booking_key"])
    assert status == 200
    await wait_for(lambda: len(inbox.to("dropped@example.org")) == 2, what="the cancellation")

    clock.advance(start - dt.timedelta(minutes=61) - clock.now())  # a minute before the reminder
    await outbox.deliver_due(server.app)
    assert len(inbox.to("kept@example.org")) == 1
    clock.advance(dt.timedelta(minutes=2))  # past the kept session's reminder time
    messages = await wait_for(lambda: len(inbox.to("kept@example.org")) == 2 and inbox.to("kept@example.org"))
    reminder = messages[1]
    assert str(reminder["Subject"]).startswith("Reminder: your appointment on")
    assert f"/join/{kept['id']}#k={kept['booking_key']}" in parts(reminder)["text/plain"].get_content()
    assert_discreet(everything(reminder))
    clock.advance(dt.timedelta(hours=1))  # past the cancelled session's reminder time too
    await outbox.deliver_due(server.app)
    assert [str(m["Subject"]).split(" ")[0] for m in inbox.to("dropped@example.org")] == ["Your", "Your"]
    assert "is cancelled" in str(inbox.to("dropped@example.org")[1]["Subject"])
    states = {m.kind: m.state for m in await outbox.for_booking(db, uuid.UUID(dropped["id"]))}
    assert states["client.reminder"] == "withdrawn"


@pytest.mark.parametrize("tier", ["busy", "initials", "full"])
async def test_the_therapist_hears_of_bookings_and_cancellations_at_the_chosen_tier(
    api: Api, inbox: Any, clock: Clock, tier: str, smtp: Any
) -> None:
    if smtp[1] is None:
        pytest.skip("the tiers once are enough (over STARTTLS)")
    therapist, session_type = await api.ready_therapist(name="Couples counselling")
    status, _ = await api.call(
        "PUT",
        f"/api/v1/therapists/{therapist['slug']}/notifications",
        token=therapist["api_token"],
        json={"notify_bookings": True, "notice_detail": tier, "email_session_type": False},
    )
    assert status == 200
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    booking = await book(api, therapist, session_type, start)
    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert status == 200

    def booking_notices() -> list[Any]:  # the therapist's invite email came first
        return [m for m in inbox.to(therapist["email"]) if "password" not in str(m["Subject"])]

    notices = await wait_for(lambda: len(booking_notices()) == 2 and booking_notices())
    subjects = sorted(str(m["Subject"]).split(":")[0] for m in notices)
    assert subjects == ["Cancelled", "New booking"]
    for notice in notices:
        content = everything(notice)
        assert_discreet(content, name_allowed=tier == "full")
        assert ("Z. Q." in content) == (tier == "initials")
        assert ("Zelda Quux" in content) == (tier == "full")
        assert ("Couples counselling" in content) == (tier != "busy")


async def test_a_client_who_asked_for_confidential_messages_gets_only_the_link(
    api: Api, inbox: Any, clock: Clock, smtp: Any
) -> None:
    if smtp[1] is not None:
        pytest.skip("once is enough (over the plain relay)")
    therapist, session_type = await api.ready_therapist()
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    booking = await book(api, therapist, session_type, start, confidential_messages=True)
    [message] = await wait_for(lambda: inbox.to(CLIENT["email"]))
    content = everything(message)
    assert str(message["Subject"]) == "Your appointment"
    assert set(parts(message)) == {"text/plain", "text/html"}  # no calendar file: it would say when
    assert f"/manage/{booking['id']}#k={booking['booking_key']}" in content
    local = start.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{local:%H:%M}" not in content and "Ada" not in content
    assert_discreet(content)


async def test_a_refused_recipient_fails_for_good_and_a_busy_one_is_tried_again(
    api: Api, server: TestServer, inbox: Any, clock: Clock, db: asyncpg.Connection, smtp: Any
) -> None:
    if smtp[1] is not None:
        pytest.skip("once is enough (over the plain relay)")
    therapist, session_type = await api.ready_therapist(reminder_minutes=[])
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    bounced = await book(api, therapist, session_type, start, client={"email": "bounce@example.org"})
    later = await book(
        api, therapist, session_type, start + dt.timedelta(hours=1), client={"email": "later@example.org"}
    )

    async def state(booking: dict[str, Any]) -> outbox.Message:
        [row] = await outbox.for_booking(db, uuid.UUID(booking["id"]))
        return row

    failed = await wait_for_async(lambda: state(bounced), lambda m: m.state == "failed")
    assert (failed.last_status, failed.last_error) == (550, "recipient refused (550)")
    retried = await wait_for_async(lambda: state(later), lambda m: m.attempts >= 1 and m.last_status == 451)
    assert retried.state == "pending" and retried.due_at > clock.now()

    status, listed = await api.call(
        "GET", f"/api/v1/therapists/{therapist['slug']}/messages?state=failed", token=therapist["api_token"]
    )
    assert status == 200
    assert [(m["id"], m["last_status"], m["booking_id"]) for m in listed] == [(str(failed.id), 550, bounced["id"])]
    assert "bounce@" not in str(listed)


async def wait_for_async(read: Any, ok: Any, timeout: float = 15.0) -> Any:
    async def check() -> Any:
        value = await read()
        return value if ok(value) else None

    async with asyncio.timeout(timeout):
        while (value := await check()) is None:
            await asyncio.sleep(0.1)
    return value


async def test_a_series_is_confirmed_once_with_a_recurring_event_and_cancelled_once(
    api: Api, server: TestServer, inbox: Any, clock: Clock, db: asyncpg.Connection, smtp: Any
) -> None:
    if smtp[1] is None:
        pytest.skip("once is enough (over STARTTLS)")
    therapist, session_type = await api.ready_therapist(series_frequencies=["weekly"], reminder_minutes=[1440, 60])
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    status, made = await api.call(
        "POST",
        f"/api/v1/therapists/{therapist['slug']}/series",
        json={
            "session_type": session_type["id"],
            "start": start.isoformat(),
            "frequency": "weekly",
            "count": 4,
            "client": CLIENT,
        },
    )
    assert status == 201, made
    [confirmation] = await wait_for(lambda: inbox.to(CLIENT["email"]))
    assert str(confirmation["Subject"]).startswith("Your appointments from ")
    text = parts(confirmation)["text/plain"].get_content()
    assert made["manage_url"] in text and "4 in all" in text
    [event] = icalendar.Calendar.from_ical(parts(confirmation)["text/calendar"].get_content()).walk("VEVENT")
    assert event["rrule"]["COUNT"] == [4] and str(event["summary"]) == "Appointment with Dr Ada Example"
    assert_discreet(everything(confirmation))
    ids = [o["booking_id"] for o in made["occurrences"]]
    reminders = [m for b in ids for m in await outbox.for_booking(db, uuid.UUID(b)) if m.kind == "client.reminder"]
    assert len(reminders) == 8 and all(m.state == "pending" for m in reminders)

    status, _ = await api.call(
        "POST", f"/api/v1/series/{made['id']}/cancel", token=made["series_key"], json={"scope": "all"}
    )
    assert status == 200, _
    messages = await wait_for(lambda: len(inbox.to(CLIENT["email"])) == 2 and inbox.to(CLIENT["email"]))
    assert str(messages[1]["Subject"]) == "4 of your appointments are cancelled"
    left = [m for b in ids for m in await outbox.for_booking(db, uuid.UUID(b)) if m.kind == "client.reminder"]
    assert {m.state for m in left} == {"withdrawn"}


async def test_a_move_says_where_to_and_moves_the_reminders_and_a_late_cancellation_names_the_fee(
    api: Api, server: TestServer, inbox: Any, clock: Clock, db: asyncpg.Connection, smtp: Any
) -> None:
    if smtp[1] is not None:
        pytest.skip("once is enough (over the plain relay)")
    policy = {"window_hours": 48, "text": "", "late_cancel_fee": {"amount": "60.00", "currency": "EUR"}}
    therapist, session_type = await api.ready_therapist(reminder_minutes=[60], policy=policy)
    start = next_grid_start(clock.now() + dt.timedelta(days=1), 60)
    booking = await book(api, therapist, session_type, start)
    await wait_for(lambda: inbox.to(CLIENT["email"]))
    moved_to = start + dt.timedelta(hours=3)
    status, _ = await api.call(
        "POST",
        f"/api/v1/bookings/{booking['id']}/reschedule",
        token=booking["booking_key"],
        json={"start": moved_to.isoformat()},
    )
    assert status == 200
    [_, moved] = await wait_for(lambda: len(inbox.to(CLIENT["email"])) == 2 and inbox.to(CLIENT["email"]))
    assert str(moved["Subject"]).startswith("Your appointment has moved to")
    assert f"#k={booking['booking_key']}" in parts(moved)["text/plain"].get_content()  # the key, copied sealed
    reminders = [m for m in await outbox.for_booking(db, uuid.UUID(booking["id"])) if m.kind == "client.reminder"]
    assert sorted((m.state, m.due_at) for m in reminders) == [
        ("pending", moved_to - dt.timedelta(hours=1)),
        ("withdrawn", start - dt.timedelta(hours=1)),
    ]

    status, _ = await api.call("POST", f"/api/v1/bookings/{booking['id']}/cancel", token=booking["booking_key"])
    assert status == 200
    [*_, cancelled] = await wait_for(lambda: len(inbox.to(CLIENT["email"])) == 3 and inbox.to(CLIENT["email"]))
    assert "60.00 EUR" in parts(cancelled)["text/plain"].get_content()
    assert f"/book/{therapist['slug']}" in parts(cancelled)["text/plain"].get_content()


async def test_connections_are_reused_across_messages(
    api: Api, server: TestServer, inbox: Any, clock: Clock, smtp: Any
) -> None:
    therapist, session_type = await api.ready_therapist(reminder_minutes=[])
    await wait_for(lambda: inbox.to(therapist["email"]), what="the invite")
    sender = server.app[SENDERS]["email"]
    assert isinstance(sender, MailSender) and sender.connections is not None
    opened = sender.connections.opened
    start = next_grid_start(clock.now() + dt.timedelta(days=2), 60)
    for i in range(12):
        await book(api, therapist, session_type, start + dt.timedelta(hours=i), client={"email": f"c{i}@example.org"})
        await wait_for(lambda i=i: inbox.to(f"c{i}@example.org"))  # one at a time: the open connection serves
    assert sender.connections.opened == opened
