"""Simulated users of the dashboard for Locust (run by bench/load_test.py and tests/test_load.py).

Each user signs in once, then walks the pages as a person does: opens the overview, the segments or
the regions page with a filter (a region, a segment, a period), reads it for a while
(``BI_LOAD_THINK_S``, "5-15" seconds by default), now and then asks the API or downloads a small
export. A page view is what a browser with the app's scripts cached asks for: the page, Dash's layout
and dependencies, then the callbacks in the waves the renderer sends them, each wave's requests side
by side. The callbacks are the ones a real Chromium sent for that page (``BI_LOAD_JOURNEYS``, recorded
by bench/load_test.py), with the recorded filter values replaced by this view's.

Every request is in Locust's statistics; the whole page views (first request to last answer) are
written to ``BI_LOAD_PAGE_VIEWS`` as a JSON list of milliseconds when Locust stops.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from urllib.parse import urlencode

from gevent.pool import Group
from locust import HttpUser, between, events, task

JOURNEYS = json.loads(open(os.environ["BI_LOAD_JOURNEYS"]).read()) if "BI_LOAD_JOURNEYS" in os.environ else {}
THINK = tuple(float(part) for part in os.environ.get("BI_LOAD_THINK_S", "5-15").split("-"))
BANNERS = ('"error-banner"', '"database-banner"', '"database-slow-banner"')
PERIODS = ("last-30-days", "last-90-days", "year-to-date", "last-12-months", "all")
page_views: list[float] = []


@events.reset_stats.add_listener
def _reset_page_views(**_kwargs: object) -> None:
    page_views.clear()


@events.quitting.add_listener
def _write_page_views(**_kwargs: object) -> None:
    if "BI_LOAD_PAGE_VIEWS" in os.environ:
        with open(os.environ["BI_LOAD_PAGE_VIEWS"], "w") as out:
            json.dump(page_views, out)


class DashboardUser(HttpUser):
    wait_time = between(THINK[0], THINK[-1])

    def on_start(self) -> None:
        form = self.client.get("/login", name="GET /login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        self.client.post("/login", name="POST /login", allow_redirects=False,
                         data={"csrf_token": token, "name": os.environ["BI_LOAD_USER"],
                               "password": os.environ["BI_LOAD_PASSWORD"], "next": "/"})

    def filters(self) -> dict[str, str]:
        return {"region": random.choice(JOURNEYS["regions"]), "segment": random.choice(JOURNEYS["segments"]),
                "period": random.choice(PERIODS)}

    def view(self, page: str) -> None:
        chosen = self.filters()
        marker = JOURNEYS["marker"]
        started = time.perf_counter()
        self.client.get(f"{page}?{urlencode(chosen)}", name=f"GET {page}", headers={"Accept": "text/html"})
        layout = Group()
        for path in ("/_dash-layout", "/_dash-dependencies"):
            layout.spawn(self.client.get, path, name=f"GET {path}")
        layout.join()
        headers = {"X-CSRFToken": self.client.cookies.get("_csrf_token", ""), "Content-Type": "application/json"}
        for wave in JOURNEYS["pages"][page]:
            group = Group()
            for call in wave:
                body = call["body"]
                for name, recorded in marker.items():
                    body = body.replace(recorded, chosen[name])
                group.spawn(self.callback, call["url"], body, headers, f"callback {call['name']}")
            group.join()
        page_views.append((time.perf_counter() - started) * 1000)

    def callback(self, url: str, body: str, headers: dict[str, str], name: str) -> None:
        """A callback request; an answer carrying one of the app's error banners counts as a failure."""
        with self.client.post(url, data=body.encode(), headers=headers, name=name, catch_response=True) as answer:
            if answer.ok and any(banner in answer.text for banner in BANNERS):
                answer.failure("the page shows an error banner")

    @task(4)
    def overview(self) -> None:
        self.view("/")

    @task(2)
    def segments(self) -> None:
        self.view("/segments")

    @task(2)
    def regions(self) -> None:
        self.view("/regions")

    @task(1)
    def api(self) -> None:
        self.client.get(f"/api/v1/kpis?{urlencode(self.filters())}", name="GET /api/v1/kpis")

    @task(1)
    def export(self) -> None:
        chosen = {**self.filters(), "period": "last-30-days"}
        self.client.get(f"/export/orders.csv?{urlencode(chosen)}", name="GET /export/orders.csv")
