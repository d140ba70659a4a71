"""The memory browser end to end: a real server, headless Chromium driven by Selenium.

Flows: key sign-in, owner per key, search, open (provenance + history), edit (new
version), archive / restore, hard delete behind a confirmation dialog, no markup from
memory text, --no-auth. One server, one browser for the module; each test seeds its own
memories through the Python API, which the server shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from _browser_helpers import MISSING
from _server_helpers import running_server
from engram import AddRequest, Memory
from engram.embed import Embedder
from engram.errors import NotFoundError
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from _browser_helpers import (  # noqa: E402
    alert,
    by_id,
    chromium,
    fresh_page,
    idle,
    show_view,
    status,
    until,
)

pytestmark = pytest.mark.slow


@dataclass
class Site:
    """The served store, its URLs and keys."""

    memory: Memory
    url: str
    open_url: str  # the same store served with --no-auth
    alice: str
    bob: str
    alice_read: str  # a read-only key


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("web-home")
    with Memory(home=home, embedder=embedder) as memory:
        keys = SQLiteKeyStore(home / "keys.db")
        alice, _ = keys.create("alice", "write")
        bob, _ = keys.create("bob", "write")
        alice_read, _ = keys.create("alice", "read")
        memory.add("Bob keeps the spare key under the blue flowerpot", user_id="bob")
        with (
            running_server(create_app(memory, keys, mcp=False)) as url,
            running_server(create_app(memory, None, mcp=False)) as open_url,
        ):
            yield Site(memory, url, open_url, alice, bob, alice_read)
        keys.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


# --- page helpers ------------------------------------------------------------------------


def sign_in(driver: webdriver.Chrome, site: Site, key: str, hash_: str = "") -> None:
    """Sign in with `key`; the memories view is shown (a #memory link shows it itself)."""
    fresh_page(driver, site.url, hash_)
    field = by_id(driver, "api-key")
    assert field.is_displayed() and field.get_attribute("type") == "password"
    field.send_keys(key, Keys.ENTER)  # the form submits from the keyboard
    until(driver, lambda: by_id(driver, "workspace").is_displayed(), "signed in")
    idle(driver)
    if not hash_:
        show_view(driver, "memories")


def owner_options(driver: webdriver.Chrome) -> list[str]:
    return [o.get_attribute("value") for o in Select(by_id(driver, "owner")).options]


def listed(driver: webdriver.Chrome) -> dict[str, str]:
    """Memory id -> text of every row the browse list shows (read in one go: the list is
    re-rendered while filters change)."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#memory-list button.open')]"
        ".map((b) => [b.dataset.id, b.textContent]))"
    )


def open_listed(driver: webdriver.Chrome, memory_id: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#memory-list button.open[data-id="{memory_id}"]').click()
    until(driver, lambda: by_id(driver, "detail").is_displayed(), "the memory opened")
    idle(driver)


def detail_fields(driver: webdriver.Chrome, list_id: str) -> dict[str, str]:
    terms = driver.find_elements(By.CSS_SELECTOR, f"#{list_id} dt")
    values = driver.find_elements(By.CSS_SELECTOR, f"#{list_id} dd")
    return {t.text: v.text for t, v in zip(terms, values, strict=True)}


def history_rows(driver: webdriver.Chrome) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def dialog_open(driver: webdriver.Chrome) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm-delete').open"))


# --- flows -------------------------------------------------------------------------------


def test_search_then_open_shows_provenance_and_history(browser, site: Site) -> None:
    [tea] = site.memory.add(
        {"role": "user", "content": "I drink green tea every morning", "name": "Alice"},
        user_id="alice",
        session_id="s-tea",
        metadata={"topic": "drinks"},
        timestamp="2021-03-04T08:00:00",
    )
    site.memory.add("My sister lives in Lisbon", user_id="alice", session_id="s-family")
    sign_in(browser, site, site.alice)

    by_id(browser, "query").send_keys("what does she drink in the morning", Keys.ENTER)
    until(browser, lambda: "results for" in status(browser), "search answered")
    hits = browser.find_elements(By.CSS_SELECTOR, "#search-results li")
    assert hits and hits[0].get_attribute("data-id") == tea.id
    assert "relevance" in hits[0].text and "s-tea" in hits[0].text
    assert "2021" in hits[0].text  # when it was said, as `engram list` shows it

    hits[0].find_element(By.CSS_SELECTOR, "button.open").click()
    until(browser, lambda: by_id(browser, "detail").is_displayed(), "the hit opened")
    idle(browser)
    assert by_id(browser, "detail-text").text == "I drink green tea every morning"
    provenance = detail_fields(browser, "detail-provenance")
    assert provenance["owner"] == "user:alice"
    assert provenance["session"] == "s-tea" and provenance["speaker"] == "Alice"
    assert provenance["source"] == "api"
    assert '"topic": "drinks"' in by_id(browser, "detail-metadata").text
    assert history_rows(browser)[0][:2] == ["1", "add"]
    tiers = browser.find_elements(By.CSS_SELECTOR, "#tiers tbody tr")
    assert [[c.text for c in row.find_elements(By.TAG_NAME, "td")] for row in tiers] == [
        ["text", tea.id, "1", "yes"]
    ]
    # the heading takes focus so keyboard and screen-reader users land on the memory
    assert browser.switch_to.active_element.get_attribute("id") == "detail-title"


def test_edit_saves_a_new_version(browser, site: Site) -> None:
    [item] = site.memory.add("The meeting is on Monday", user_id="alice")
    sign_in(browser, site, site.alice)
    open_listed(browser, item.id)

    text = by_id(browser, "edit-text")
    text.clear()
    text.send_keys("The meeting moved to Tuesday")
    by_id(browser, "edit-reason").send_keys("rescheduled")
    by_id(browser, "edit-form").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(browser, lambda: "Saved version 2" in status(browser), "the edit was saved")

    rows = history_rows(browser)
    assert [r[:2] for r in rows] == [["1", "add"], ["2", "update"]]
    assert rows[0][3] == "The meeting is on Monday"
    assert rows[1][3] == "The meeting moved to Tuesday" and rows[1][4] == "rescheduled"
    assert site.memory.get(item.id, user_id="alice").memory == "The meeting moved to Tuesday"
    assert listed(browser)[item.id] == "The meeting moved to Tuesday"


def test_archive_then_restore(browser, site: Site) -> None:
    [item] = site.memory.add("Parking spot is B12", user_id="alice")
    sign_in(browser, site, site.alice)
    open_listed(browser, item.id)

    by_id(browser, "archive").click()
    until(browser, lambda: "Archived" in status(browser), "archived")
    assert detail_fields(browser, "detail-fields")["state"] == "archived"
    assert site.memory.get(item.id, user_id="alice").state == "archived"
    assert item.id not in listed(browser)  # the list shows active memories by default
    assert by_id(browser, "restore").is_displayed() and not by_id(browser, "archive").is_displayed()

    Select(by_id(browser, "filter-state")).select_by_value("archived")
    until(browser, lambda: item.id in listed(browser), "archived memories listed")
    by_id(browser, "restore").click()
    until(browser, lambda: "Restored" in status(browser), "restored")
    assert detail_fields(browser, "detail-fields")["state"] == "active"
    assert site.memory.get(item.id, user_id="alice").state == "active"
    assert [r[1] for r in history_rows(browser)] == ["add", "delete", "restore"]


def test_hard_delete_asks_first(browser, site: Site) -> None:
    [item] = site.memory.add("Old phone number 555-0100", user_id="alice")
    sign_in(browser, site, site.alice)
    open_listed(browser, item.id)

    by_id(browser, "hard-delete").click()
    assert dialog_open(browser)
    assert by_id(browser, "confirm-text").text == "Old phone number 555-0100"
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)  # Escape cancels
    until(browser, lambda: not dialog_open(browser), "the dialog closed")
    assert site.memory.get(item.id, user_id="alice").memory == "Old phone number 555-0100"

    by_id(browser, "hard-delete").click()
    by_id(browser, "confirm-delete").find_element(By.XPATH, ".//button[text()='Cancel']").click()
    until(browser, lambda: not dialog_open(browser), "the dialog closed")
    assert site.memory.get(item.id, user_id="alice").state == "active"

    by_id(browser, "hard-delete").click()
    by_id(browser, "confirm-erase").click()
    until(browser, lambda: "erased" in status(browser), "erased")
    with pytest.raises(NotFoundError):
        site.memory.get(item.id, user_id="alice")
    assert item.id not in listed(browser)
    assert not by_id(browser, "detail").is_displayed()


def test_a_key_sees_only_its_own_owner(browser, site: Site) -> None:
    [secret] = site.memory.add("Bob's locker code is 4711", user_id="bob")
    site.memory.add("Alice likes jazz", user_id="alice")
    sign_in(browser, site, site.alice)
    assert owner_options(browser) == ["user:alice"]
    assert not [t for t in listed(browser).values() if "Bob" in t]
    by_id(browser, "query").send_keys("locker code", Keys.ENTER)
    until(browser, lambda: "for “locker code”" in status(browser), "search answered")
    assert not [
        h for h in browser.find_elements(By.CSS_SELECTOR, "#search-results li") if "4711" in h.text
    ]

    # a direct link to Bob's memory is "not found", exactly like a missing one
    browser.get(f"{site.url}/#memory={secret.id}")
    idle(browser)
    until(browser, lambda: "Not found" in alert(browser), "the link was refused")
    assert not by_id(browser, "detail").is_displayed()
    assert "4711" not in browser.find_element(By.TAG_NAME, "body").text

    by_id(browser, "forget-key").click()
    assert by_id(browser, "api-key").is_displayed()
    by_id(browser, "api-key").send_keys(site.bob, Keys.ENTER)
    until(browser, lambda: owner_options(browser) == ["user:bob"], "bob's owner")
    idle(browser)
    assert secret.id in listed(browser)


def test_read_only_key_reads_but_cannot_change(browser, site: Site) -> None:
    [item] = site.memory.add("Alice's dentist is Dr. Moreau", user_id="alice")
    sign_in(browser, site, site.alice_read)
    open_listed(browser, item.id)
    by_id(browser, "archive").click()
    until(browser, lambda: "scope" in alert(browser), "the server refused the change")
    assert "forbidden" in alert(browser)
    assert site.memory.get(item.id, user_id="alice").state == "active"


def test_wrong_key_is_refused(browser, site: Site) -> None:
    fresh_page(browser, site.url)
    by_id(browser, "api-key").send_keys("egk_not-a-real-key", Keys.ENTER)
    until(browser, lambda: "not accepted" in alert(browser), "the key was refused")
    assert not by_id(browser, "workspace").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('engram.apiKey')") is None


def test_memory_text_is_shown_as_text_never_markup(browser, site: Site) -> None:
    hostile = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    [item] = site.memory.add(hostile, user_id="alice", metadata={"note": "<script>x()</script>"})
    sign_in(browser, site, site.alice, hash_=f"#memory={item.id}")
    until(browser, lambda: by_id(browser, "detail").is_displayed(), "the linked memory opened")
    idle(browser)
    assert listed(browser)[item.id] == hostile
    assert by_id(browser, "detail-text").text == hostile
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main b, main script")
    assert browser.execute_script("return window.__pwned") is None


def test_no_auth_server_needs_no_key(browser, site: Site) -> None:
    site.memory.add("Alice plays chess", user_id="alice")
    fresh_page(browser, site.open_url)
    until(browser, lambda: by_id(browser, "workspace").is_displayed(), "the workspace shows")
    idle(browser)
    show_view(browser, "memories")
    assert not by_id(browser, "key-form").is_displayed()
    assert "without authentication" in by_id(browser, "key-info").text
    assert {"user:alice", "user:bob"} <= set(owner_options(browser))
    Select(by_id(browser, "owner")).select_by_value("user:bob")
    until(browser, lambda: "of user:bob" in status(browser), "bob's memories loaded")
    assert any("flowerpot" in text for text in listed(browser).values())


def test_browse_filters_and_load_more(browser, site: Site) -> None:
    requests = [
        AddRequest(
            f"carol note {n:02d}", user_id="carol", memory_type="fact" if n % 10 else "event"
        )
        for n in range(60)
    ]
    site.memory.add_batch(requests)
    fresh_page(browser, site.open_url)
    show_view(browser, "memories")
    Select(by_id(browser, "owner")).select_by_value("user:carol")
    until(browser, lambda: "of user:carol" in status(browser), "carol's memories loaded")
    assert len(listed(browser)) == 50  # one page
    assert by_id(browser, "load-more").is_displayed()
    by_id(browser, "load-more").click()
    until(browser, lambda: len(listed(browser)) == 60, "the next page loaded")
    assert not by_id(browser, "load-more").is_displayed()  # no more pages

    by_id(browser, "filter-text").send_keys("NOTE 1")  # filters as you type, any case
    assert sorted(listed(browser).values()) == [f"carol note {n}" for n in range(10, 20)]
    by_id(browser, "filter-text").send_keys(Keys.CONTROL, "a", Keys.DELETE)
    until(browser, lambda: len(listed(browser)) == 60, "the text filter was cleared")

    Select(by_id(browser, "filter-type")).select_by_value("event")
    until(browser, lambda: len(listed(browser)) == 6, "only events listed")
    assert sorted(listed(browser).values()) == [f"carol note {n:02d}" for n in range(0, 60, 10)]


def test_every_control_has_a_label(browser, site: Site) -> None:
    fresh_page(browser, site.open_url)
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter((c) => !c.labels.length && !c.getAttribute('aria-label')).map((c) => c.id)"
    )
    assert unlabelled == []
    assert by_id(browser, "status").get_attribute("aria-live") == "polite"
    assert by_id(browser, "alert").get_attribute("role") == "alert"
