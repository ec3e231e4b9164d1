"""Dashboard fixtures: real pipeline runs into SQLite, the dashboard on a real socket, headless Chromium.

- ``history`` (session): two real runs of a small history pipeline (WikiWorker -> TaskPlanner ->
  PriceWorker -> PostgresWorker into SQLite) against the bundled price server: one clean, one
  against a faulty server that leaves failed items. Gives the run directory and the store.
- ``browser`` (session): headless Chromium through Selenium and Debian's chromedriver; the tests
  that use it skip, with the reason, when either is missing or will not start.
- ``screenshot(browser, name)``: saves the page as ``$DASHBOARD_SCREENSHOTS/<name>.png``
  (default ``build/screenshots/``) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import crypto_server
from dashboard import DashboardServer, create_app
from engine import RunReport, StageStatus
from service.live import LiveRun
from service.timeline import TimelineRecorder
from store.target import PriceStore
from yaml_reader import YamlPipelineExecutor

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or REPO / "build" / "screenshots")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
SYMBOLS = 3
EXCHANGES = ["bitstamp", "kraken"]
FIRST_DAY, LAST_DAY = "2020-04-01", "2020-04-20"  # 20 days: 20 close prices per symbol and exchange
DAYS = 20


def history_pipeline(tmp_path: Path, server_url: str, database: Path, *, name: str = "history",
                     fetchers: int = 4, retries: int = 3) -> Path:
    """A pipeline file: SYMBOLS symbols x EXCHANGES x DAYS prices from ``server_url`` into SQLite."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "monitor_interval": 0.1,
        "queues": [{"name": "symbols", "maxsize": 10}, {"name": "tasks", "maxsize": 20},
                   {"name": "prices", "maxsize": 50}],
        "workers": [
            {"name": "WikiWorker", "location": "workers.wiki_worker", "class": "WikiWorker",
             "input_values": [f"{server_url}/wiki/List_of_cryptocurrencies"], "output_queues": "symbols",
             "params": {"limit": SYMBOLS}},
            {"name": "TaskPlanner", "location": "workers.task_planner", "class": "TaskPlanner",
             "input_queue": "symbols", "output_queues": "tasks",
             "params": {"base_url": server_url, "exchanges": EXCHANGES, "start": FIRST_DAY, "end": LAST_DAY}},
            {"name": "PriceWorker", "location": "workers.price_worker", "class": "PriceWorker",
             "instances": fetchers, "input_queue": "tasks", "output_queues": "prices",
             "params": {"base_url": server_url, "http": {"retries": retries, "backoff": 0.0}}},
            {"name": "PostgresWorker", "location": "workers.postgres_worker", "class": "PostgresWorker",
             "input_queue": "prices", "batch_size": 20, "batch_timeout": 0.2,
             "params": {"database_url": f"sqlite:///{database}"}},
        ],
    }, sort_keys=False))
    return path


def run_pipeline(path: Path, run_dir: Path, live: LiveRun | None = None,
                 on_status: Callable[[list[StageStatus]], None] | None = None) -> RunReport:
    """Run the pipeline in this process as ``python main.py`` does, recording its timeline (and feeding ``live``
    and ``on_status``)."""
    executor: YamlPipelineExecutor

    def run_path() -> Path | None:
        return executor.run_path

    recorder = TimelineRecorder(run_path)

    def each_status(statuses: list[StageStatus]) -> None:
        recorder(statuses)
        if live is not None:
            live.update(statuses)
        if on_status is not None:
            on_status(statuses)

    executor = YamlPipelineExecutor(path, run_dir=run_dir, on_status=each_status)
    if live is not None:
        live.begin(path.stem, run_path)
    report = executor.run()
    assert executor.run_path is not None
    (executor.run_path / "report.json").write_text(json.dumps(report.to_dict()))
    if live is not None:
        live.wait(None)
    return report


@dataclass
class History:
    run_dir: Path
    store: PriceStore
    pipeline: Path  # the clean run's pipeline file (its writer's database_url is the store)
    clean: RunReport  # the run that stored every price
    faulty: RunReport  # the run against a failing server: it left failed items


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    tmp_path = tmp_path_factory.mktemp("history")
    database = tmp_path / "prices.db"
    run_dir = tmp_path / "runs"
    with crypto_server.serve_in_background(port=0, seed=2020, sleep=0.02) as server:
        pipeline = history_pipeline(tmp_path, server.url, database)
        clean = run_pipeline(pipeline, run_dir)
        # Errors begin once the run has started (its start-up checks would refuse a failing server).
        faulty = run_pipeline(history_pipeline(tmp_path, server.url, database, name="faulty", retries=0), run_dir,
                              on_status=lambda statuses: server.set_faults(error_rate=0.3))
    assert clean.exit_code == 0 and faulty.dead_letters > 0, (clean.exit_code, faulty.dead_letters)
    yield History(run_dir, PriceStore(f"sqlite:///{database}"), pipeline, clean, faulty)


@pytest.fixture
def serve() -> Iterator[Callable[..., DashboardServer]]:
    """``serve(run_dir=..., store=..., live=...)``: the dashboard on a free port, stopped after the test."""
    servers: list[DashboardServer] = []

    def start(*, run_dir: Path, store: PriceStore | None = None, live: LiveRun | None = None,
              store_call: Callable[[], PriceStore | None] | None = None) -> DashboardServer:
        app = create_app(run_dir=run_dir, store=store_call or (lambda: store), live=live)
        server = DashboardServer(app, "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    if not any(shutil.which(name) for name in CHROMIUM):
        return "no chromium found (Debian: apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver found (Debian: apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM if shutil.which(n))  # type: ignore[assignment]
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    except WebDriverException as exc:
        pytest.skip(f"headless chromium would not start: {exc.msg or exc}".splitlines()[0])
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole page (as tall as its content) as ``<SCREENSHOTS>/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete", what="the whole page")
    # The window is the page plus the browser's own bars: as tall as the page, up to 4,000 pixels.
    height = driver.execute_script(
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight")
    driver.set_window_size(1280, max(700, min(int(height), 4000)))
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    driver.set_window_size(1280, 1000)
    return path


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "the page") -> Any:
    """Poll ``condition`` until it returns something true (returned), failing after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout}s")
        time.sleep(0.05)

