"""A 52-session standing series through the API (preview + book), next to 52 single bookings through the API.

Both sides book the same 52 weekly times for one therapist through HTTP: the series as one preview
and one booking request (one transaction), the singles as 52 booking requests one after another (a
client booking week by week). The ratio is what booking the rhythm at once saves, or costs.

    python -m bench.series [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time

from bench.harness import ADMIN, Running, running_service

WEEKS = 52


async def series_type(svc: Running, slug: str, token: str) -> str:
    body = {
        "name": "Weekly",
        "duration_minutes": 50,
        "min_notice_minutes": 0,
        "horizon_days": 730,
        "slot_interval_minutes": 60,
        "series_frequencies": ["weekly"],
        "series_max_sessions": WEEKS,
    }
    st = await svc.call("POST", f"/api/v1/therapists/{slug}/session-types", token, body)
    return str(st["id"])


async def setup(svc: Running, slug: str) -> str:
    t = await svc.call(
        "POST",
        "/api/v1/therapists",
        ADMIN,
        {"slug": slug, "name": "Bench", "email": f"{slug}@example.org", "timezone": "UTC"},
    )
    week = [{"day": d, "start": "00:00", "end": "24:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
    await svc.call(
        "PUT", f"/api/v1/therapists/{slug}/availability", t["api_token"], {"timezone": "UTC", "weekly": week}
    )
    return await series_type(svc, slug, t["api_token"])


def first_start(hour: int) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(hour=hour, minute=0, second=0, microsecond=0)


async def as_series(svc: Running, slug: str, st: str, start: dt.datetime) -> float:
    body = {"session_type": st, "start": start.isoformat(), "frequency": "weekly", "count": WEEKS}
    began = time.perf_counter()
    preview = await svc.call("POST", f"/api/v1/therapists/{slug}/series/preview", json=body)
    assert all(o["status"] == "free" for o in preview["occurrences"])
    made = await svc.call(
        "POST", f"/api/v1/therapists/{slug}/series", json={**body, "client": {"name": "C", "email": "c@example.org"}}
    )
    elapsed = time.perf_counter() - began
    assert made["booked"] == WEEKS, made["booked"]
    return elapsed


async def as_singles(svc: Running, slug: str, st: str, start: dt.datetime) -> float:
    began = time.perf_counter()
    for week in range(WEEKS):
        when = start + dt.timedelta(weeks=week)
        body = {"session_type": st, "start": when.isoformat(), "client": {"name": "C", "email": "c@example.org"}}
        await svc.call("POST", f"/api/v1/therapists/{slug}/bookings", json=body)
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    series_times: list[float] = []
    single_times: list[float] = []
    async with running_service() as svc:
        st_series = await setup(svc, "bench-series")
        st_single = await setup(svc, "bench-single")
        for r in range(args.rounds):  # each round on its own hour, so no round meets another's bookings
            series_times.append(await as_series(svc, "bench-series", st_series, first_start(r)))
            single_times.append(await as_singles(svc, "bench-single", st_single, first_start(r)))
    series_ms = statistics.median(series_times) * 1000
    single_ms = statistics.median(single_times) * 1000
    print(f"sessions={WEEKS} rounds={args.rounds} (median of rounds)")
    print(f"series preview+book : {series_ms:8.1f} ms")
    print(f"52 single bookings  : {single_ms:8.1f} ms")
    print(f"ratio series/singles: {series_ms / single_ms:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
