"""Malformed answers from the network: each is one item's failure with its reason, never a crash.

A stub server answers like crypto_server from the same dataset, except on the
paths a test overrides with a crafted answer.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from engine.dead_letter import read_dead_letters
from engine.report import EXIT_FAILURES
from tests.faults.conftest import (
    check_accounting,
    count_rows,
    plan,
    price_pipeline,
    priced,
    query,
)

SYMBOLS = ["btc", "eth", "ltc", "xrp", "ada"]
START, END = "2020-04-01", "2020-04-04"
EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]
MAX_BYTES = 200_000
HTTP = {"retries": 1, "backoff": 0.01, "read_timeout": 0.5, "connect_timeout": 1, "max_bytes": MAX_BYTES}

NESTED = b"[" * 100_000 + b"]" * 100_000  # valid JSON that Python's decoder cannot take
_PRICE_PATH = re.compile(r"^/price/([^/]+)/([^/]+)/([^/]+)$")


@pytest.fixture
def stub(dataset) -> Iterator[SimpleNamespace]:
    """``stub.url``; ``stub.routes[path] = (status, body, headers, delay)`` overrides one path."""
    routes: dict[str, tuple[int, bytes, dict[str, str | None], float]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in routes:
                status, body, headers, delay = routes[self.path]
            else:
                status, body, headers, delay = self._like_crypto_server()
            if delay:
                time.sleep(delay)
            self.send_response(status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
            for name, value in headers.items():
                if value is not None:
                    self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up on a slow or huge answer

        def _like_crypto_server(self) -> tuple[int, bytes, dict[str, str | None], float]:
            if self.path == "/exchanges":
                return 200, json.dumps(dataset.exchanges).encode(), {}, 0
            if self.path == "/days":
                days = {"first": dataset.days.first.isoformat(), "last": dataset.days.last.isoformat()}
                return 200, json.dumps(days).encode(), {}, 0
            match = _PRICE_PATH.match(self.path)
            if match:
                return 200, json.dumps(dataset.price(*match.groups())).encode(), {}, 0
            return 404, b'{"error": "not found"}', {}, 0

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", routes=routes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _price(**changes: Any) -> dict[str, Any]:
    price = {"exchange": "kraken", "symbol": "btc", "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
             "volume": 10.0, "day": "2020-04-01"}
    price.update(changes)
    return {k: v for k, v in price.items() if v is not ...}


# (answer, a fragment of the dead-letter message). Each goes to one task of its own.
MALFORMED: dict[str, tuple[tuple[int, bytes, dict[str, str | None], float], str]] = {
    "html instead of json": ((200, b"<html><body>Bad gateway</body></html>", {"Content-Type": "text/html"}, 0),
                             "bad JSON"),
    "truncated json": ((200, b'{"open": 1.0, "high": ', {}, 0), "bad JSON"),
    "empty body": ((200, b"", {}, 0), "bad JSON"),
    "binary garbage": ((200, bytes(range(256)) * 4, {"Content-Type": "application/octet-stream"}, 0), "bad JSON"),
    "a list, not an object": ((200, b"[1, 2, 3]", {}, 0), "expected a price object"),
    "missing fields": ((200, json.dumps(_price(close=..., volume=...)).encode(), {}, 0), "lacks close, volume"),
    "non-numeric price": ((200, json.dumps(_price(close="n/a")).encode(), {}, 0), "close 'n/a' is not a number"),
    "boolean price": ((200, json.dumps(_price(open=True)).encode(), {}, 0), "open True is not a number"),
    "NaN price": ((200, b'{"open": NaN, "high": 1, "low": 1, "close": 1, "volume": 1}', {}, 0), "open nan is not finite"),
    "infinite price": ((200, b'{"open": 1e999, "high": 1, "low": 1, "close": 1, "volume": 1}', {}, 0),
                       "open inf is not finite"),
    "huge body, declared": ((200, b" " * (MAX_BYTES * 5), {}, 0), f"is over {MAX_BYTES}"),
    "huge body, undeclared": ((200, b"[" + b"0," * (MAX_BYTES * 2) + b"0]", {"Content-Length": None}, 0),
                              f"over {MAX_BYTES} bytes"),
    # Any reason will do here; that it names the URL is checked by the test below.
    "deeply nested json": ((200, NESTED, {}, 0), ""),
    "not found": ((404, b'{"error": "gone"}', {}, 0), "404 Client Error"),
    "slower than the read timeout": ((200, json.dumps(_price()).encode(), {}, 2.0), "timed out"),
}


@pytest.mark.timeout(60)
def test_malformed_price_answers_fail_their_items_with_reasons_and_the_rest_is_stored(
    stub, run_pipeline, clean_prices, dataset
):
    tasks = plan(SYMBOLS, EXCHANGES, START, END)  # 60 tasks
    victims = {}
    for (name, (answer, fragment)), key in zip(MALFORMED.items(), tasks[::4]):
        symbol, exchange, day = key
        stub.routes[f"/price/{exchange}/{symbol}/{day}"] = answer
        victims[key] = (name, fragment)

    report = run_pipeline(price_pipeline(
        server_url=stub.url, database_url=clean_prices, symbols=SYMBOLS, start=START, end=END, http=HTTP,
    ))

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert set(done.dead) == set(victims), "exactly the malformed answers fail"
    for key, (name, fragment) in victims.items():
        (entry,) = done.dead[key]
        assert entry["stage"] == "PriceWorker" and entry["kind"] == "failed", (name, entry)
        assert fragment in entry["message"], (name, entry["message"])
    assert done.stored == set(priced(tasks, dataset)) - set(victims)
    stage = report.stage("PriceWorker")
    assert (stage.state, stage.restarts, stage.failed) == ("done", 0, len(victims))


@pytest.mark.timeout(30)
def test_deeply_nested_json_fails_as_bad_json_naming_the_url(stub, run_pipeline, clean_prices, dataset):
    tasks = plan(["btc"], ["kraken"], START, START)
    path = f"/price/kraken/btc/{START}"
    stub.routes[path] = (200, NESTED, {}, 0)
    report = run_pipeline(price_pipeline(
        server_url=stub.url, database_url=clean_prices, symbols=["btc"], start=START, end=START,
        exchanges=["kraken"], http=HTTP,
    ))
    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    (entry,) = done.dead[tasks[0]]
    assert entry["error_type"] == "PriceDataError"
    assert f"bad JSON from {stub.url}{path}" in entry["message"], entry["message"]


WIKI_TABLE = """<html><body><table class="wikitable">
<tr><th>Name</th><th>Symbol</th></tr>
{rows}
</table></body></html>"""

MALFORMED_PAGES: dict[str, tuple[tuple[int, bytes, dict[str, str | None], float], str]] = {
    "no table": ((200, b"<html><body><p>This page has moved.</p></body></html>", {"Content-Type": "text/html"}, 0),
                 "no table matching 'table.wikitable'"),
    "no symbol column": ((200, WIKI_TABLE.replace("Symbol", "Ticker").format(rows="<tr><td>B</td><td>BTC</td></tr>")
                          .encode(), {"Content-Type": "text/html"}, 0), "no column 'Symbol'"),
    "binary garbage": ((200, bytes(range(256)) * 8, {"Content-Type": "text/html"}, 0), "no table"),
    "huge page": ((200, b"<html>" + b"<p>x</p>" * MAX_BYTES, {"Content-Type": "text/html"}, 0),
                  f"is over {MAX_BYTES}"),
    "server error": ((500, b"<html>oops</html>", {"Content-Type": "text/html"}, 0), "500 Server Error"),
}


def _wiki_or_symbols_pipeline(
    server_url: str,
    database_url: str,
    *,
    pages: list[str] | None = None,
    symbols: list[str] | None = None,
    wiki_http: dict[str, Any] = HTTP,
    **fetcher: Any,
) -> dict[str, Any]:
    """[WikiWorker over ``pages`` ->] PriceWorker (over ``symbols`` if no pages) -> PostgresWorker."""
    price_worker = {
        "name": "PriceWorker", "location": "workers.price_worker", "class": "PriceWorker", "instances": 3,
        "output_queues": ["Records"],
        "params": {"base_url": server_url, "exchanges": EXCHANGES, "date": START, "http": HTTP, **fetcher},
    }
    stages = []
    if pages is None:
        price_worker["input_values"] = symbols
    else:
        price_worker["input_queue"] = "Symbols"
        stages.append({"name": "Wiki", "location": "workers.wiki_worker", "class": "WikiWorker",
                       "input_values": pages, "output_queues": ["Symbols"], "params": {"http": wiki_http}})
    writer = {"name": "Writer", "location": "workers.postgres_worker", "class": "PostgresWorker",
              "input_queue": "Records", "batch_size": 10, "batch_timeout": 0.1,
              "params": {"database_url": database_url, "retry_seconds": 5}}
    return {
        "name": "symbols",
        "queues": [{"name": "Symbols"}, {"name": "Records"}] if pages is not None else [{"name": "Records"}],
        "workers": [*stages, price_worker, writer],
    }


@pytest.mark.timeout(60)
def test_malformed_wiki_pages_fail_alone_and_the_good_page_flows(stub, run_pipeline, clean_prices, dataset):
    good = ["BTC", "ETH", "LTC"]
    rows = "\n".join(f"<tr><td>{s.title()}</td><td>{s}<sup>[1]</sup></td></tr>" for s in good)
    stub.routes["/wiki/good"] = (200, WIKI_TABLE.format(rows=rows).encode(), {"Content-Type": "text/html"}, 0)
    pages = {"/wiki/good": None}
    for n, (name, (answer, fragment)) in enumerate(MALFORMED_PAGES.items()):
        stub.routes[f"/wiki/bad{n}"] = answer
        pages[f"/wiki/bad{n}"] = (name, fragment)
    document = _wiki_or_symbols_pipeline(stub.url, clean_prices, pages=[stub.url + path for path in pages])
    report = run_pipeline(document)

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    entries = read_dead_letters(report.dead_letter_path)
    by_url = {e["item"]: e for e in entries}
    assert len(by_url) == len(entries) == len(MALFORMED_PAGES)
    for path, expected in pages.items():
        if expected is None:
            assert stub.url + path not in by_url
            continue
        name, fragment = expected
        entry = by_url[stub.url + path]
        assert (entry["stage"], entry["kind"]) == ("Wiki", "failed"), (name, entry)
        assert fragment in entry["message"], (name, entry["message"])
    # The good page's symbols went all the way: every price the server has is stored, once.
    tasks = plan([s.lower() for s in good], EXCHANGES, START, START)
    assert count_rows(clean_prices) == len(priced(tasks, dataset))
    check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices, entries=[])
    assert query(clean_prices, "SELECT DISTINCT symbol FROM prices ORDER BY 1") == [(s,) for s in sorted(good)]


# --- answers that parse but must not be stored ---------------------------------------------


def _garbage(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    """An answer: the real price of the task with ``changes`` (``...`` drops a field). NaN/inf become JSON tokens."""

    def answer(price: dict[str, Any]) -> bytes:
        changed = {**price, **changes}
        return json.dumps({k: v for k, v in changed.items() if v is not ...}).encode()

    return answer


# (answer made of the task's real price, error type, a fragment of the dead-letter message).
INVALID: dict[str, tuple[Callable[[dict[str, Any]], bytes], str, str]] = {
    "negative close": (_garbage(close=-1.5), "InvalidPrice", "close -1.5 is not positive"),
    "zero open": (_garbage(open=0), "InvalidPrice", "open 0 is not positive"),
    "NaN token": (_garbage(close=math.nan), "InvalidPrice", "close nan is not finite"),
    "Infinity token": (_garbage(high=math.inf), "InvalidPrice", "high inf is not finite"),
    "-Infinity token": (_garbage(low=-math.inf), "InvalidPrice", "low -inf is not finite"),
    "1e308": (_garbage(high=1e308), "InvalidPrice", "high 1e+308 is over 1e+12"),
    "a 400-digit integer": (_garbage(high=10**400), "InvalidPrice", "high 1e400 (an integer) is over 1e+12"),
    "high below low": (_garbage(high=0.5, low=2.0, open=1.0, close=1.0), "InvalidPrice", "high 0.5 is below low 2.0"),
    "close above high": (_garbage(high=2.0, low=1.0, open=1.5, close=3.0), "InvalidPrice", "close 3.0 is above high 2.0"),
    "open below low": (_garbage(high=2.0, low=1.0, open=0.5, close=1.5), "InvalidPrice", "open 0.5 is below low 1.0"),
    "volume -1": (_garbage(volume=-1), "InvalidPrice", "volume -1 is negative"),
    "volume 1e308": (_garbage(volume=1e308), "InvalidPrice", "volume 1e+308 is over 1e+20"),
    "price as a string": (_garbage(close="1.5"), "InvalidPrice", "close '1.5' is not a number"),
    "volume as a boolean": (_garbage(volume=True), "InvalidPrice", "volume True is not a number"),
    "price as a list": (_garbage(open=[1.0]), "InvalidPrice", "open [1.0] is not a number"),
    "price as an object": (_garbage(low={"value": 1}), "InvalidPrice", "low {'value': 1} is not a number"),
    "null price": (_garbage(close=None), "PriceDataError", "lacks close"),
    "missing field": (_garbage(high=...), "PriceDataError", "lacks high"),
}


@pytest.mark.timeout(60)
def test_invalid_prices_are_dead_letters_with_their_reason_never_rows(stub, run_pipeline, clean_prices, dataset):
    tasks = plan(SYMBOLS, EXCHANGES, START, END)  # 60 tasks
    priced_tasks = priced(tasks, dataset)
    victims = {}
    for (name, (answer, error_type, fragment)), key in zip(INVALID.items(), priced_tasks[::3], strict=False):
        symbol, exchange, day = key
        stub.routes[f"/price/{exchange}/{symbol}/{day}"] = (200, answer(dataset.price(exchange, symbol, day)), {}, 0)
        victims[key] = (name, error_type, fragment)
    assert len(victims) == len(INVALID)

    report = run_pipeline(price_pipeline(
        server_url=stub.url, database_url=clean_prices, symbols=SYMBOLS, start=START, end=END, http=HTTP,
    ))

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert set(done.dead) == set(victims), "exactly the invalid answers fail"
    for key, (name, error_type, fragment) in victims.items():
        (entry,) = done.dead[key]
        assert (entry["stage"], entry["kind"], entry["error_type"]) == ("PriceWorker", "failed", error_type), name
        assert fragment in entry["message"] and len(entry["message"]) < 200, (name, entry["message"])
    assert done.stored == set(priced_tasks) - set(victims)
    assert _invalid_rows(clean_prices) == []


def _invalid_rows(database_url: str) -> list[tuple[Any, ...]]:
    """Stored rows that break a rule of workers.validation.check_price, judged by PostgreSQL itself.

    (PostgreSQL orders NaN above every number, so a NaN fails ``<= 1e12``.)
    """
    return query(database_url, """
        SELECT symbol, exchange, price_date, open, high, low, close, volume FROM prices
        WHERE NOT (
            coalesce(open > 0 AND open <= 1e12 AND open BETWEEN low AND high, true)
            AND coalesce(close > 0 AND close <= 1e12 AND close BETWEEN low AND high, true)
            AND coalesce(low > 0 AND low <= high, true)
            AND coalesce(high > 0 AND high <= 1e12, true)
            AND coalesce(volume >= 0 AND volume <= 1e20, true)
            AND price_date BETWEEN '1900-01-01' AND current_date + 1
        )""")


@pytest.mark.timeout(60)
def test_an_invalid_exchange_of_a_symbol_fails_alone_and_the_others_are_stored(stub, run_pipeline, clean_prices, dataset):
    symbols, day = ["btc", "eth"], "2020-04-02"  # a day when each has a price on every exchange
    for exchange, answer in {"bitstamp": _garbage(close=-1.0), "kraken": _garbage(high=1e308)}.items():
        stub.routes[f"/price/{exchange}/btc/{day}"] = (200, answer(dataset.price(exchange, "btc", day)), {}, 0)
    document = _wiki_or_symbols_pipeline(stub.url, clean_prices, symbols=symbols, date=day)
    report = run_pipeline(document)

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    (entry,) = read_dead_letters(report.dead_letter_path)
    assert (entry["item"], entry["error_type"]) == ("btc", "ExchangesFailed")
    assert "btc: 2 of 3 exchange(s) failed" in entry["message"]
    assert "close -1.0 is not positive" in entry["message"] and "high 1e+308 is over 1e+12" in entry["message"]
    stored = query(clean_prices, "SELECT lower(symbol), exchange FROM prices ORDER BY 1, 2")
    assert stored == [("btc", "coinbase-pro"), ("eth", "bitstamp"), ("eth", "coinbase-pro"), ("eth", "kraken")]
    assert _invalid_rows(clean_prices) == []


QUOTE_PAGE = """<html><body><h1>{symbol}</h1>
<fin-streamer data-symbol="{symbol}" data-field="regularMarketPrice" value="{value}">{value}</fin-streamer>
<div id="quote-market-notice">As of {day} 23:59 UTC.</div></body></html>"""

# symbol -> (value attribute, day on the page, a fragment of the dead-letter message; None: stored).
QUOTES: dict[str, tuple[str, str, str | None]] = {
    "GOOD": ("7247.5", "2020-04-30", None),
    "SMALL": ("0.00000042", "2020-04-30", None),
    "NEG": ("-3.5", "2020-04-30", "close -3.5 is not positive"),
    "ZERO": ("0", "2020-04-30", "close 0.0 is not positive"),
    "HUGE": ("1e308", "2020-04-30", "close 1e+308 is over 1e+12"),
    "NAN": ("NaN", "2020-04-30", "non-numeric price 'NaN'"),
    "INF": ("Infinity", "2020-04-30", "non-numeric price 'Infinity'"),
    "WORD": ("n/a", "2020-04-30", "non-numeric price 'n/a'"),
    "FUTURE": ("12.5", "2999-01-01", "price_date 2999-01-01 is in the future"),
    "ANCIENT": ("12.5", "1066-10-14", "price_date 1066-10-14 is before 1900-01-01"),
}


@pytest.mark.timeout(60)
def test_quote_pages_with_invalid_prices_are_dead_letters_never_rows(stub, run_pipeline, clean_prices):
    for symbol, (value, day, _) in QUOTES.items():
        page = QUOTE_PAGE.format(symbol=symbol, value=value, day=day).encode()
        stub.routes[f"/quote/{symbol}"] = (200, page, {"Content-Type": "text/html"}, 0)
    document = _wiki_or_symbols_pipeline(stub.url, clean_prices, symbols=list(QUOTES), mode="quote_page")
    report = run_pipeline(document)

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    entries = {e["item"]: e for e in read_dead_letters(report.dead_letter_path)}
    bad = {symbol: fragment for symbol, (_, _, fragment) in QUOTES.items() if fragment}
    assert set(entries) == set(bad)
    for symbol, fragment in bad.items():
        assert fragment in entries[symbol]["message"], (symbol, entries[symbol])
        assert f"{stub.url}/quote/{symbol}" in entries[symbol]["message"]
    stored = query(clean_prices, "SELECT symbol, exchange, price_date::text, close FROM prices ORDER BY 1")
    assert stored == [("GOOD", "quote", "2020-04-30", 7247.5), ("SMALL", "quote", "2020-04-30", 4.2e-07)]
    assert _invalid_rows(clean_prices) == []


@pytest.mark.timeout(60)
def test_page_shapes_fail_their_rows_only_and_keep_them_whole(stub, run_pipeline, clean_prices, dataset, caplog):
    deep = "<td>" + "<span>" * 5_000 + "DOGE" + "</span>" * 5_000 + "</td>"
    huge = "<td>" + "ADA " * 2_500_000 + "</td>"  # 10 MB of text in one cell
    rows = [
        "<th>Name</th><th>Symbol</th>",
        '<td colspan="2"><b>Active</b></td>',
        "<td>Bitcoin</td><td>BTC, XBT, \u20bf</td>",
        f"<td>Dogecoin</td>{deep}",
        "<td>Ethereum</td><td>\u039e / ETH</td>",
        f"<td>Cardano</td>{huge}",
        "<td>Litecoin</td><td>LTC (\u0141)</td>",
    ]
    body = "<html><body><table class='wikitable'>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</table></body></html>"
    stub.routes["/wiki/shapes"] = (200, body.encode(), {"Content-Type": "text/html; charset=utf-8"}, 0)
    page = stub.url + "/wiki/shapes"
    document = _wiki_or_symbols_pipeline(
        stub.url, clean_prices, pages=[page], wiki_http={"retries": 1, "read_timeout": 5}
    )
    report = run_pipeline(document)

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    entries = read_dead_letters(report.dead_letter_path)
    assert [(e["stage"], e["kind"], e["error_type"]) for e in entries] == [("Wiki", "failed", "CellError")] * 2
    deep_entry, huge_entry = sorted(entries, key=lambda e: e["item"]["row"])
    assert deep_entry["item"] == {"page": page, "row": 4, "column": "Symbol", "cell": deep}
    assert deep_entry["message"].endswith("row 4 of table.wikitable on " + page + ": cell nested more than 100 tags deep")
    assert huge_entry["item"] == {"page": page, "row": 6, "column": "Symbol", "cell": huge}  # whole, all 10 MB
    assert huge_entry["message"].endswith("cell text is over 10,000 characters") and len(huge_entry["message"]) < 200
    assert max(len(record.getMessage()) for record in caplog.records) < 500, "a log line carries the cell"
    # The page's other rows went all the way, as their primary tickers.
    tasks = plan(["btc", "eth", "ltc"], EXCHANGES, START, START)
    check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices, entries=[])
    assert query(clean_prices, "SELECT DISTINCT symbol FROM prices ORDER BY 1") == [("BTC",), ("ETH",), ("LTC",)]


@pytest.mark.timeout(60)
def test_an_absurdly_long_symbol_is_refused_in_a_short_line_and_kept_whole(stub, run_pipeline, clean_prices, caplog):
    absurd = "BTC" * 100_000
    report = run_pipeline(_wiki_or_symbols_pipeline(stub.url, clean_prices, symbols=["ETH", absurd], date="2020-04-02"))

    assert report.exit_code == EXIT_FAILURES, report.reason  # the bad items fail alone; the run says so
    (entry,) = read_dead_letters(report.dead_letter_path)
    assert (entry["stage"], entry["item"], entry["error_type"]) == ("PriceWorker", absurd, "ValueError")
    assert entry["message"].startswith("symbol of 300,000 characters is longer than 32") and len(entry["message"]) < 120
    assert max(len(record.getMessage()) for record in caplog.records) < 500, "a log line carries the symbol"
    assert query(clean_prices, "SELECT DISTINCT symbol FROM prices") == [("ETH",)]
