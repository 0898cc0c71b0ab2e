"""The operator dashboard in a real browser (Debian's Chromium, driven by chromedriver).

Signs in with a token, creates an agent, searches memories and forgets one, opens a session
replay read from the S3 archive, and reads a chart; at 1280 px and at 390 px wide. Every page
load is checked for console errors (a CSP violation is one) and for a page wider than the
window, and saved as a screenshot under .ibex/screenshots/ for review.

Run by scripts/browser-test.sh, which starts the sidecar and passes, in the environment:
IBEX_HTTP (http://host:port), IBEX_TOKEN (an admin token of a fresh org), IBEX_ORG,
IBEX_STACK (the stack.sh path, for psql), IBEX_SCREENSHOTS (the directory).
"""

import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

HTTP = os.environ["IBEX_HTTP"]
TOKEN = os.environ["IBEX_TOKEN"]
ORG = os.environ["IBEX_ORG"]
STACK = os.environ["IBEX_STACK"]
SHOTS = os.environ["IBEX_SCREENSHOTS"]
WIDE, NARROW = (1280, 900), (390, 844)


def api(method, path, body=None):
    """A management API call as the org's admin; the parsed JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(HTTP + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + TOKEN)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        raw = answer.read()
        return json.loads(raw) if raw else None


def in_org(sql):
    """A statement in the org's transaction on the test database, as its superuser (the way
    the sidecar's proxy writes sessions and usage); the answer's lines."""
    scope = f"SELECT set_config('ibex.org_id', '{ORG}', true) IS NOT NULL"
    out = subprocess.run([STACK, "psql", "test", "-At", "-1", "-c", scope, "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.split()[1:]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_window_size(*WIDE)
    driver.set_page_load_timeout(30)
    return driver


class Checks:
    """What every page load must satisfy, and its screenshot."""

    def __init__(self, driver):
        self.driver = driver

    def console_errors(self):
        return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def page(self, name):
        d = self.driver
        errors = self.console_errors()
        assert not errors, f"{name}: console errors: {errors}"
        width = d.execute_script("return window.innerWidth")
        scroll = d.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width + 1, f"{name}: the page is {scroll} px wide in a {width} px window"
        d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))

    def open(self, path, name):
        self.driver.get(HTTP + path)
        self.page(name)


def gone(element):
    """A wait condition: true once `element` has left the document. Chrome reports a node of a
    page being replaced either as a stale element or, in the middle of the navigation, as an
    inspector error on a node that "does not belong to the document": both mean the old page is
    gone (selenium's staleness_of only knows the first, and failed the suite on the second)."""

    def check(_driver):
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            message = str(error)
            if "does not belong to the document" in message or "No node with given id" in message:
                return True
            raise

    return check


def follow(driver, element):
    """Clicks a link or a submit button and waits for the page it loads. The click returns
    before the navigation ends, so a lookup right after it may read the old page, or an
    element of it that goes stale under the lookup."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(driver, 30)
    wait.until(gone(old))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def sign_in(driver, checks):
    driver.get(HTTP + "/dashboard/")
    assert driver.current_url.endswith("/dashboard/login?reason=signed_out"), driver.current_url
    checks.page("00-login")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Overview", text(driver)
    checks.page("01-overview")


def create_agent(driver, checks):
    checks.open("/dashboard/agents", "02-agents")
    assert "No agents" in text(driver)
    driver.find_element(By.ID, "name").send_keys("Browser helper")
    driver.find_element(By.ID, "description").send_keys("Made by the browser test.")
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/dashboard/agents'][method=post] button"))
    assert "Browser helper" in driver.find_element(By.TAG_NAME, "h1").text, text(driver)
    checks.page("03-agent")
    return driver.current_url.rsplit("/", 1)[1]


def seed(agent):
    """Memories through the API; a session with turns and usage through SQL (the proxy's
    path), completed through the API and archived by the sidecar's worker."""
    for content in ("The user's favourite colour is teal.", "The user walks the dog every morning.",
                    "The user prefers answers in French."):
        api("POST", "/v1/memories", {"agent_id": agent, "content": content, "category": "declarative"})
    turns = json.dumps([
        {"role": "user", "content": "Book a table for two at eight.", "tokens": 9, "model": "gpt-4o-mini"},
        {"role": "assistant", "content": "Booked: two people, 8 pm, at Chez Rex.", "tokens": 12, "model": "gpt-4o-mini"},
    ])
    session = in_org(
        f"WITH s AS (SELECT ibex_core.ensure_session('{ORG}', '{agent}') AS id) "
        f"SELECT s.id FROM s, LATERAL ibex_core.append_turns('{ORG}', s.id, '{turns}'::jsonb) t"
    )[0]
    in_org(
        f"SELECT count(ibex_core.record_usage('{ORG}', '{agent}', '{session}', NULL, "
        f"CASE WHEN i % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4o-mini' END, 100 + i, 20 + i, 40 * i, 200, false)) "
        f"FROM generate_series(1, 24) i"
    )
    api("POST", f"/v1/sessions/{session}/complete")
    deadline = time.time() + 60
    while api("GET", f"/v1/sessions/{session}").get("archived_at") is None:
        assert time.time() < deadline, "the session was not archived within 60 s"
        time.sleep(0.5)
    return session


def search_and_forget(driver, checks, agent):
    checks.open("/dashboard/memories", "04-memories")
    driver.find_element(By.ID, "q").send_keys("favourite colour")
    Select(driver.find_element(By.ID, "agent")).select_by_value(agent)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form[role=search] button"))
    rows = driver.find_elements(By.CSS_SELECTOR, "table.hits tbody tr")
    assert rows, text(driver)
    assert "teal" in rows[0].text, rows[0].text
    score = float(rows[0].find_element(By.CSS_SELECTOR, "td.num strong").text)
    assert 0 < score <= 1.5, score
    checks.page("05-search")
    follow(driver, rows[0].find_element(By.TAG_NAME, "a"))
    assert "Version history" in text(driver)
    checks.page("06-memory")
    follow(driver, driver.find_element(By.LINK_TEXT, "Forget this memory…"))
    checks.page("07-forget")
    driver.find_element(By.ID, "reason").send_keys("outdated")
    follow(driver, driver.find_element(By.CSS_SELECTOR, "button.danger"))
    assert driver.find_element(By.CSS_SELECTOR, "h1 .badge").text == "deleted", text(driver)
    assert "outdated" in text(driver)
    checks.page("08-forgotten")


def open_replay(driver, checks, session):
    checks.open("/dashboard/sessions", "09-sessions")
    follow(driver, driver.find_element(By.CSS_SELECTOR, f"a[href='/dashboard/sessions/{session}']"))
    checks.page("10-session")
    follow(driver, driver.find_element(By.LINK_TEXT, "Replay from the archive"))
    body = text(driver)
    for shown in ("Checkpoint 1", "Book a table for two at eight.", "Chez Rex", "gpt-4o-mini", "21 tokens"):
        assert shown in body, f"{shown!r} not in the replay: {body}"
    checks.page("11-replay")


def read_chart(driver, checks):
    checks.open("/dashboard/analytics?range=24h", "12-analytics")
    body = text(driver)
    assert "24" in body and "Requests" in body, body
    charts = driver.find_elements(By.CSS_SELECTOR, "svg")
    assert len(charts) >= 3, f"{len(charts)} charts"
    bars = driver.find_elements(By.CSS_SELECTOR, "svg .chart-bar")
    assert bars, "no bar in any chart"
    titles = " ".join(t.get_attribute("textContent") for t in driver.find_elements(By.CSS_SELECTOR, "svg title"))
    assert "gpt-4o-mini" in driver.page_source, titles


def narrow_pages(driver, checks, session):
    driver.set_window_size(*NARROW)
    for path, name in (("/dashboard/", "20-narrow-overview"), ("/dashboard/memories", "21-narrow-memories"),
                       (f"/dashboard/sessions/{session}/replay", "22-narrow-replay"),
                       ("/dashboard/analytics", "23-narrow-analytics"), ("/dashboard/agents", "24-narrow-agents")):
        checks.open(path, name)
    driver.set_window_size(*WIDE)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    driver = browser()
    checks = Checks(driver)
    steps = []
    try:
        sign_in(driver, checks)
        steps.append("signed in")
        agent = create_agent(driver, checks)
        steps.append("created an agent")
        session = seed(agent)
        search_and_forget(driver, checks, agent)
        steps.append("searched memories and forgot one")
        open_replay(driver, checks, session)
        steps.append("opened a session replay")
        read_chart(driver, checks)
        steps.append("read a chart")
        narrow_pages(driver, checks, session)
        steps.append("pages at 390 px")
    except Exception:  # noqa: BLE001 - every failure is reported with the page it happened on
        traceback.print_exc()
        shot = os.path.join(SHOTS, "failure.png")
        driver.save_screenshot(shot)
        print(f"browser: FAILED after: {', '.join(steps) or 'nothing'}; at {driver.current_url}; screenshot {shot}",
              file=sys.stderr)
        return 1
    finally:
        driver.quit()
    print(f"browser: passed: {', '.join(steps)}; screenshots in {SHOTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
