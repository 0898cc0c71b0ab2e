"""make bench-dashboard: every dashboard page over the seeded benchmark org (100 agents,
100,000 memories, 10,000 sessions, 1,000,000 usage events), loaded in headless Chromium.

Per page: LCP, the p50 of 5 loads as the browser's own PerformanceObserver reports it; the
server time (a GET of the page with the session cookie, 30 times: p50, p95, p99); and the peer,
the management API call the page is built on, measured the same way in the same run (what the
page adds to the data it shows). Ends with the BENCH lines.

Environment (scripts/bench-dashboard.sh): IBEX_HTTP, IBEX_TOKEN, IBEX_AGENT, IBEX_SESSION,
IBEX_MEMORY, IBEX_REPLAY_SESSION.
"""

import os
import statistics
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

HTTP = os.environ["IBEX_HTTP"]
TOKEN = os.environ["IBEX_TOKEN"]
AGENT = os.environ["IBEX_AGENT"]
SESSION = os.environ["IBEX_SESSION"]
MEMORY = os.environ["IBEX_MEMORY"]
REPLAY = os.environ["IBEX_REPLAY_SESSION"]
LOADS, REQUESTS = 5, 30
LCP_TARGET_MS, SERVER_TARGET_MS = 500, 100

# (name, dashboard path, the API call the page is built on)
PAGES = [
    ("overview", "/dashboard/", "/v1/analytics/usage?bucket=day&from={d30}&to={now}"),
    ("agents", "/dashboard/agents", "/v1/agents?limit=50"),
    ("agent", f"/dashboard/agents/{AGENT}", f"/v1/agents/{AGENT}"),
    ("directives", f"/dashboard/agents/{AGENT}/directives", f"/v1/agents/{AGENT}/directives?limit=12"),
    ("memories", "/dashboard/memories", "/v1/memories?limit=50"),
    ("memories_filtered", f"/dashboard/memories?agent={AGENT}&category=episodic",
     f"/v1/memories?agent_id={AGENT}&category=episodic&limit=50"),
    ("memory_search", f"/dashboard/memories?q=coffee+at+work&agent={AGENT}",
     f"/v1/memories?q=coffee+at+work&agent_id={AGENT}&limit=50"),
    ("memory", f"/dashboard/memories/{MEMORY}", f"/v1/memories/{MEMORY}"),
    ("conflicts", "/dashboard/conflicts", "/v1/conflicts?limit=50"),
    ("sessions", "/dashboard/sessions", "/v1/sessions?limit=50"),
    ("session", f"/dashboard/sessions/{SESSION}", f"/v1/sessions/{SESSION}"),
    ("replay", f"/dashboard/sessions/{REPLAY}/replay", f"/v1/sessions/{REPLAY}/archive"),
    ("analytics_24h", "/dashboard/analytics?range=24h", "/v1/analytics/usage?bucket=hour&from={d1}&to={now}"),
    ("analytics_30d", "/dashboard/analytics?range=30d", "/v1/analytics/usage?bucket=day&from={d30}&to={now}"),
    ("tokens", "/dashboard/tokens", "/v1/tokens?limit=50"),
]

LCP_SCRIPT = """
const done = arguments[arguments.length - 1];
new PerformanceObserver((list) => {
  const entries = list.getEntries();
  done(entries[entries.length - 1].startTime);
}).observe({type: 'largest-contentful-paint', buffered: true});
setTimeout(() => done(null), 3000);
"""


def timed_get(path, headers):
    start = time.perf_counter()
    request = urllib.request.Request(HTTP + path, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
        status = answer.status
    elapsed = (time.perf_counter() - start) * 1000
    assert status == 200, f"{path}: {status}"
    return elapsed


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def sign_in(driver):
    driver.get(HTTP + "/dashboard/login")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "Overview", driver.page_source[:500]
    return driver.get_cookie("ibex_dashboard")["value"]


def lcp(driver, path):
    driver.get(HTTP + path)
    value = driver.execute_async_script(LCP_SCRIPT)
    assert value is not None, f"{path}: no LCP entry"
    return float(value)


def main():
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    dates = {"now": iso(now), "d1": iso(now - 86400), "d30": iso(now - 30 * 86400)}
    driver = browser()
    driver.set_script_timeout(10)
    try:
        cookie = sign_in(driver)
        page_headers = {"Cookie": f"ibex_dashboard={cookie}"}
        api_headers = {"Authorization": f"Bearer {TOKEN}"}
        print(f"inputs: 100 agents, 100,000 memories, 10,000 sessions, 1,000,000 usage events; "
              f"{LOADS} browser loads and {REQUESTS} timed GETs per page, after one warm-up")
        print(f"{'page':<18} {'LCP p50':>8} {'server p50':>11} {'p95':>7} {'p99':>7} {'API p50':>8} {'page/API':>9}")
        worst_lcp, worst_p99, failures = 0.0, 0.0, []
        for name, path, api_path in PAGES:
            api_path = api_path.format(**dates)
            lcp(driver, path)
            loads = [lcp(driver, path) for _ in range(LOADS)]
            timed_get(path, page_headers)
            server = [timed_get(path, page_headers) for _ in range(REQUESTS)]
            timed_get(api_path, api_headers)
            peer = [timed_get(api_path, api_headers) for _ in range(REQUESTS)]
            lcp50, s50, s95, s99 = statistics.median(loads), percentile(server, 50), percentile(server, 95), percentile(server, 99)
            p50 = percentile(peer, 50)
            print(f"{name:<18} {lcp50:>6.0f}ms {s50:>9.1f}ms {s95:>5.1f}ms {s99:>5.1f}ms {p50:>6.1f}ms {s50 / p50:>8.2f}x")
            worst_lcp, worst_p99 = max(worst_lcp, lcp50), max(worst_p99, s99)
            if lcp50 > LCP_TARGET_MS:
                failures.append(f"{name}: LCP {lcp50:.0f} ms > {LCP_TARGET_MS} ms")
            if s99 > SERVER_TARGET_MS:
                failures.append(f"{name}: server p99 {s99:.0f} ms > {SERVER_TARGET_MS} ms")
    finally:
        driver.quit()
    print(f"targets: LCP <= {LCP_TARGET_MS} ms per page, server p99 <= {SERVER_TARGET_MS} ms: "
          + ("met" if not failures else "MISSED: " + "; ".join(failures)))
    print(f"BENCH dashboard_lcp_worst_ms {worst_lcp:.0f}")
    print(f"BENCH dashboard_server_p99_ms {worst_p99:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
