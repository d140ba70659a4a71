"""The page's views of an owner's memory, driven in headless Chromium at 1280x800: overview
counts equal the store's, a timeline band per session, the forgetting curve and what gc
would archive next, a version diff, background jobs; by keyboard, within the CSP, one
owner per key. Each test saves a screenshot under its tmp_path and prints the path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from _browser_helpers import MISSING
from _server_helpers import running_server
from engram import Memory
from engram.embed import Embedder
from engram.extract import ExtractionContext, ExtractionError, Extractor, Plan, register_extractor
from engram.lifecycle.report import GcAction
from engram.server.app import create_app
from engram.store.jobs import JobState
from engram.store.sqlite_keys import SQLiteKeyStore

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from _browser_helpers import (  # noqa: E402
    by_id,
    chromium,
    csp_violations,
    fresh_page,
    idle,
    screenshot,
    show_view,
    until,
)

pytestmark = pytest.mark.slow
TRIP = [
    {"content": "We land in Lisbon at nine", "timestamp": "2024-03-01T09:00:00"},
    {"content": "Book a table at the fado place", "timestamp": "2024-03-01T09:05:00"},
    {"content": "The tram to Belém was packed", "timestamp": "2024-03-02T18:00:00"},
]
SYNC = [
    {"content": "Quarterly numbers are due Friday", "timestamp": "2024-04-10T14:00:00"},
    {"content": "Ask Priya for the revenue sheet", "timestamp": "2024-04-10T14:30:00"},
]


class BrokenNotes(Extractor):
    """Fails on the 'broken' session, plans nothing elsewhere: jobs in both end states."""

    name = "test-web-notes"

    def plan(self, ctx: ExtractionContext) -> Plan:
        if ctx.session_id == "broken":
            raise ExtractionError("the notes model is offline")
        return Plan(note="nothing to note")


register_extractor(BrokenNotes)


@dataclass
class Site:
    memory: Memory
    url: str
    dana: str
    erin: str
    edited: str  # a memory with two versions
    pinned: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("web-views")
    extract = {"extractors": ["test-web-notes"], "max_attempts": 1, "backoff_s": 0.0}
    with Memory(home=home, embedder=embedder, extract=extract) as memory:
        keys = SQLiteKeyStore(home / "keys.db")
        dana, _ = keys.create("dana", "read")
        erin, _ = keys.create("erin", "read")
        edited, pinned = _seed(memory)
        with running_server(create_app(memory, keys, mcp=False)) as url:
            yield Site(memory, url, dana, erin, edited, pinned)
        keys.close()


def _seed(memory: Memory) -> tuple[str, str]:
    memory.add(TRIP, user_id="dana", session_id="trip-lisbon")
    memory.add(SYNC, user_id="dana", session_id="work-sync")
    memory.add([{"content": "this one breaks the notes"}], user_id="dana", session_id="broken")
    memory.run_jobs()  # done for two sessions, failed for 'broken'
    memory.add("Call the bank about the card", user_id="dana", session_id="errands")  # queued
    facts = [
        memory.add(text, user_id="dana", memory_type=kind, timestamp=at)[0]
        for text, kind, at in [
            ("Dana is allergic to peanuts", "fact", "2024-02-20T08:00:00"),
            ("Dana prefers window seats", "preference", "2024-02-21T08:00:00"),
            ("Dana's passport expires in 2031", "fact", "2024-02-22T08:00:00"),
            ("Dana used to live in Porto", "fact", "2024-02-23T08:00:00"),
        ]
    ]
    memory.delete(facts[3].id, user_id="dana", reason="moved away")
    [meeting] = memory.add("The meeting is on Monday at noon", user_id="dana", memory_type="event")
    memory.update(meeting.id, "The meeting moved to Tuesday at noon", user_id="dana")
    memory.pin(facts[2].id, user_id="dana")
    memory.set_retention_policy(user_id="dana", min_retrievability=0.5)
    # three strengths: twice recalled and consolidated (90 days), new (14), twice wrong (3.5)
    trip = next(memory.iter_all(user_id="dana"))
    for _ in range(2):
        memory.reinforce(trip.id, user_id="dana")
        memory.feedback("window or aisle?", wrong=[facts[1].id], user_id="dana")
    memory.gc(user_id="dana")
    memory.add("Erin's bike lock code is 3141", user_id="erin", session_id="erin-s1")
    return meeting.id, facts[2].id


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium(1280, 800) as driver:
        yield driver


def sign_in(driver: webdriver.Chrome, site: Site, key: str, hash_: str = "") -> None:
    fresh_page(driver, site.url, hash_)
    by_id(driver, "api-key").send_keys(key, Keys.ENTER)
    until(driver, lambda: by_id(driver, "workspace").is_displayed(), "signed in")
    idle(driver)


def shot(driver: webdriver.Chrome, tmp_path: Path, name: str, record: Any) -> None:
    path = screenshot(driver, tmp_path / f"{name}.png")
    record("screenshot", str(path))
    assert csp_violations(driver) == []  # nothing was refused by the page's policy


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def attrs(driver: webdriver.Chrome, css: str, name: str) -> list[str]:
    """`data-<name>` of every element matching `css`, read in one go (no stale elements
    while the page re-renders)."""
    return driver.execute_script(
        f"return [...document.querySelectorAll('{css}')].map((e) => e.dataset.{name})"
    )


def bar_counts(driver: webdriver.Chrome, box: str) -> dict[str, int]:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{box} .bars li")
    return {
        r.get_attribute("data-key"): int(r.find_element(By.CLASS_NAME, "bar-count").text)
        for r in rows
    }


# --- views -------------------------------------------------------------------------------


def test_overview_counts_equal_the_store(browser, site: Site, tmp_path, record_property) -> None:
    sign_in(browser, site, site.dana)
    assert by_id(browser, "tab-overview").get_attribute("aria-selected") == "true"
    until(browser, lambda: by_id(browser, "overview-owner").text == "user:dana", "dana's overview")
    items = list(site.memory.iter_all(user_id="dana", include_archived=True))
    states = Counter(i.state.value for i in items)
    cards = {
        c.get_attribute("data-key"): int(c.find_element(By.CLASS_NAME, "card-value").text)
        for c in browser.find_elements(By.CSS_SELECTOR, "#overview-cards .card")
    }
    sessions = {i.provenance.session_id for i in items} - {None}
    assert cards == {
        "total": len(items),
        "active": states["active"],
        "archived": states["archived"],
        "sessions": len(sessions),
        "pinned": 1,
    }
    assert states["archived"] == 1 and len(sessions) == 4
    assert bar_counts(browser, "by-type") == Counter(i.type for i in items)
    tiers = Counter(
        site.memory.retention(i.id, user_id="dana").tier.value
        for i in items
        if i.state.value == "active"
    )
    assert bar_counts(browser, "by-tier") == {
        "working": tiers["working"],
        "episodic": tiers["episodic"],
        "long-term": tiers["long_term"],
    }
    assert bar_counts(browser, "by-state") == {"active": states["active"], "archived": 1}
    shot(browser, tmp_path, "overview", record_property)


def test_timeline_draws_a_band_per_session(browser, site: Site, tmp_path, record_property) -> None:
    sign_in(browser, site, site.dana)
    show_view(browser, "timeline")
    active = list(site.memory.iter_all(user_id="dana"))
    sessions = {i.provenance.session_id or "" for i in active}
    bands = browser.find_elements(By.CSS_SELECTOR, "#timeline-chart .band")
    assert sorted(b.get_attribute("data-session") for b in bands) == sorted(sessions)
    by_session = Counter(i.provenance.session_id or "" for i in active)
    for band in bands:
        session = band.get_attribute("data-session")
        assert len(band.find_elements(By.CSS_SELECTOR, "circle.dot")) == by_session[session]
    # bands run oldest first: the Lisbon trip (March 2024) before the work sync (April)
    order = [b.get_attribute("data-session") for b in bands]
    assert order.index("trip-lisbon") < order.index("work-sync")

    # keyboard: Tab reaches the first band, arrows move, Enter lists the session
    browser.execute_script("document.getElementById('timeline-archived').focus()")
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("data-session") == order[0]
    target = order.index("trip-lisbon")
    for _ in range(target):
        browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert browser.switch_to.active_element.get_attribute("data-session") == "trip-lisbon"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    until(browser, lambda: texts(browser, "#timeline-session button.open"), "the session listed")
    assert texts(browser, "#timeline-session button.open") == [t["content"] for t in TRIP]
    assert "3 memories" in by_id(browser, "timeline-session-title").text
    shot(browser, tmp_path, "timeline", record_property)

    by_id(browser, "timeline-archived").click()  # archived memories join their lanes
    idle(browser)
    until(
        browser,
        lambda: (
            len(browser.find_elements(By.CSS_SELECTOR, "#timeline-chart circle.dot"))
            == len(active) + 1
        ),
        "the archived memory drawn",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline-chart circle.archived")) == 1


def test_retention_shows_the_curve_and_what_gc_archives_next(
    browser, site: Site, tmp_path, record_property
) -> None:
    sign_in(browser, site, site.dana)
    show_view(browser, "retention")
    active = list(site.memory.iter_all(user_id="dana"))
    dots = browser.find_elements(By.CSS_SELECTOR, "#retention-chart circle.dot")
    assert sorted(d.get_attribute("data-id") for d in dots) == sorted(i.id for i in active)
    strengths = {
        round(site.memory.retention(i.id, user_id="dana").strength_days, 1) for i in active
    }
    assert strengths == {3.5, 14.0, 90.0}
    curves = browser.find_elements(By.CSS_SELECTOR, "#retention-chart path.proj")
    assert len(curves) >= len(strengths)  # one line per strength (and tier and fate)
    assert "gc archives below R = 0.5" in by_id(browser, "retention-chart").text

    # the forecast is gc's own dry runs: the weakened preference goes within a week, the
    # unpinned long-term memories of 14 days within a month; pinned and buffered ones stay
    evicted = {}
    for days in (0, 7, 30, 90, 365):
        later = datetime.now(UTC) + timedelta(days=days)
        report = site.memory.gc(user_id="dana", dry_run=True, at=later)
        evicted[days] = {d.id for d in report.decisions if d.action is GcAction.EVICT}
    assert evicted[0] == set() and len(evicted[7]) == 1 and len(evicted[30]) == 3
    assert site.pinned not in evicted[365]
    forecast = bar_counts(browser, "gc-forecast")
    assert forecast == {
        ("now" if d == 0 else f"in {d} days"): len(ids) for d, ids in evicted.items()
    }
    shown = browser.find_elements(By.CSS_SELECTOR, "#gc-next li")
    assert {li.get_attribute("data-id") for li in shown} == evicted[7]
    assert "next, in 7 days" in by_id(browser, "gc-next-title").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#weakest tbody tr")
    assert {r.get_attribute("data-id") for r in rows} == {i.id for i in active}
    pinned_row = next(r for r in rows if r.get_attribute("data-id") == site.pinned)
    assert "pinned" in pinned_row.text and "archived soon" not in pinned_row.text
    shot(browser, tmp_path, "retention", record_property)
    assert site.memory.gc(user_id="dana", dry_run=True).evicted == 0  # dry runs changed nothing


def test_history_diff_shows_removed_and_added_words(
    browser, site: Site, tmp_path, record_property
) -> None:
    sign_in(browser, site, site.dana, hash_=f"#memory={site.edited}")
    until(browser, lambda: by_id(browser, "detail").is_displayed(), "the memory opened")
    idle(browser)
    assert by_id(browser, "tab-memories").get_attribute("aria-selected") == "true"
    assert texts(browser, "#diff-output del") == ["is on Monday"]
    assert texts(browser, "#diff-output ins") == ["moved to Tuesday"]
    assert by_id(browser, "diff-output").text.startswith("The meeting")
    assert "3 words removed, 3 words added" in by_id(browser, "diff-summary").text
    browser.execute_script("document.getElementById('diff-box').scrollIntoView()")
    shot(browser, tmp_path, "diff", record_property)

    # choose the versions by keyboard: v2 against itself has no changes
    by_id(browser, "diff-from").send_keys(Keys.ARROW_DOWN)
    until(browser, lambda: "No text changes" in by_id(browser, "diff-summary").text, "re-diffed")
    assert not browser.find_elements(By.CSS_SELECTOR, "#diff-output del, #diff-output ins")


def test_jobs_show_their_state(browser, site: Site, tmp_path, record_property) -> None:
    sign_in(browser, site, site.dana)
    show_view(browser, "jobs")
    jobs = site.memory.jobs(user_id="dana")
    counts = Counter(j.state.value for j in jobs)
    assert counts["done"] == 2 and counts["failed"] == 1 and counts["queued"] == 1
    assert bar_counts(browser, "job-counts") == {s.value: counts[s.value] for s in JobState}
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")
    assert [int(r.get_attribute("data-id")) for r in rows] == [j.id for j in jobs]  # newest first
    failed = [r for r in rows if r.get_attribute("data-state") == "failed"]
    assert len(failed) == 1 and "the notes model is offline" in failed[0].text
    assert "broken" in failed[0].text and "1/1" in failed[0].text
    shot(browser, tmp_path, "jobs", record_property)

    Select(by_id(browser, "jobs-state")).select_by_value("done")
    until(browser, lambda: attrs(browser, "#jobs-table tbody tr", "state") == ["done"] * 2, "done")
    idle(browser)
    assert attrs(browser, "#jobs-table tbody tr", "state") == ["done", "done"]


def test_views_switch_by_keyboard_with_visible_focus(browser, site: Site) -> None:
    sign_in(browser, site, site.dana)
    tab = by_id(browser, "tab-overview")
    tab.send_keys(Keys.ARROW_RIGHT)
    idle(browser)
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "tab-timeline"
    assert (
        active.get_attribute("aria-selected") == "true" and active.get_attribute("tabindex") == "0"
    )
    assert by_id(browser, "view-timeline").is_displayed()
    assert not by_id(browser, "view-overview").is_displayed()
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus ring shows
    active.send_keys(Keys.END)
    idle(browser)
    assert browser.switch_to.active_element.get_attribute("id") == "tab-memories"
    browser.switch_to.active_element.send_keys(Keys.HOME)
    idle(browser)
    assert browser.switch_to.active_element.get_attribute("id") == "tab-overview"
    assert by_id(browser, "view-overview").get_attribute("data-owner") == "user:dana"
    # only the selected tab is in the tab order; every panel and band is labelled
    tabindexes = [
        t.get_attribute("tabindex") for t in browser.find_elements(By.CSS_SELECTOR, "[role=tab]")
    ]
    assert tabindexes.count("0") == 1
    assert csp_violations(browser) == []


def test_views_show_only_the_keys_owner(browser, site: Site) -> None:
    sign_in(browser, site, site.erin)
    until(browser, lambda: by_id(browser, "overview-owner").text == "user:erin", "erin's overview")
    for view in ("timeline", "retention", "jobs"):
        show_view(browser, view)
        assert by_id(browser, f"view-{view}").get_attribute("data-owner") == "user:erin"
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "3141" in by_id(browser, "view-retention").get_attribute("textContent")
    for secret in ("Lisbon", "peanuts", "notes model", "trip-lisbon"):
        assert secret not in page
        assert secret not in browser.find_element(By.TAG_NAME, "main").get_attribute("textContent")
