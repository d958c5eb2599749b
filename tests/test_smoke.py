import datetime as dt

from tests.support import Api


async def test_book_cancel_roundtrip(api: Api) -> None:
    therapist, st = await api.ready_therapist()
    today = dt.date.today()
    slots = await api.slots(therapist, st, today + dt.timedelta(days=1), today + dt.timedelta(days=1))
    assert slots
    status, body = await api.book(therapist, st, slots[0]["start"])
    assert status == 201, body
    assert body["booking_key"].startswith("trk_")
    status, again = await api.book(therapist, st, slots[0]["start"])
    assert status == 409 and again["code"] == "slot_unavailable"
