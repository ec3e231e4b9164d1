"""PriceWorker against the crypto_server mock, and against crafted bodies from a tiny stub server."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from workers.price_worker import ExchangesFailed, InvalidPrice, PriceDataError, PriceWorker
from workers.records import PriceRecord, PriceTask

# Fail fast in tests: no retries unless a test asks for them.
NO_RETRY = {"retries": 0, "connect_timeout": 2, "read_timeout": 5}
QUOTE_HTML = """<html><body>
<div class="sidebar"><fin-streamer data-symbol="ETH" data-field="regularMarketPrice" value="130.1">130.10</fin-streamer></div>
<h1>Bitcoin</h1>
<fin-streamer data-symbol="BTC" data-field="regularMarketPrice" value="7247.5">7,247.50</fin-streamer>
<span class="alt-price">12,345,678.9</span>
<div id="quote-market-notice"><span>As of 2020-04-30 23:59 UTC. Market open.</span></div>
</body></html>"""


def run(worker: PriceWorker, item: Any) -> tuple[list[PriceRecord], Exception | None]:
    """Drive ``process`` like the engine: keep what was yielded, then the exception if any."""
    outputs: list[PriceRecord] = []
    try:
        for output in worker.process(item):
            outputs.append(output)
    except Exception as exc:  # noqa: BLE001 - the engine catches everything too
        return outputs, exc
    return outputs, None


@pytest.fixture
def make_worker() -> Iterator[Any]:
    """``make_worker(url, **params)``: a PriceWorker without retries unless ``http`` says so; closed after the test."""
    workers: list[PriceWorker] = []

    def make(url: str, **params: Any) -> PriceWorker:
        params.setdefault("http", NO_RETRY)
        workers.append(PriceWorker(base_url=url, **params))
        return workers[-1]

    yield make
    for worker in workers:
        worker.close()


@pytest.fixture
def stub() -> Iterator[SimpleNamespace]:
    """A tiny HTTP server answering ``routes[path] = (status, body, headers)``; 404 otherwise."""
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            status, body, headers = routes.get(self.path, (404, b'{"error": "not found"}', {}))
            self.send_response(status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
            for name, value in headers.items():
                if value is not None:
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll so shutdown() at teardown does not wait half a second.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", routes=routes, seen=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def price_json(**overrides: Any) -> bytes:
    price = {"exchange": "binance", "symbol": "btc", "open": 1, "high": 2.5, "low": 0.5, "close": 2,
             "volume": 100, "day": "2020-01-02"}
    price.update(overrides)
    return json.dumps({k: v for k, v in price.items() if v is not ...}).encode()


# --- parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "scrape"}, "unknown mode 'scrape'"),
        ({"date": "2020/01/02"}, "date must be YYYY-MM-DD or 'latest'"),
        ({"date": "2020-13-01"}, "date must be"),
        ({"exchanges": []}, "empty"),
        ({"exchanges": "binance"}, "exchanges must be 'all' or a list"),
        ({"exchanges": ["binance", ""]}, "exchange '' is not a non-empty string"),
        ({"xpath": "//fin-streamer["}, "bad xpath"),
        ({"date_xpath": "//*[@id="}, "bad date_xpath"),
        ({"http": {"retry": 3}}, "bad http parameters"),
    ],
)
def test_bad_params_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceWorker(**params)


def test_base_url_defaults_to_environment(monkeypatch: pytest.MonkeyPatch, stub: SimpleNamespace) -> None:
    stub.routes["/price/kraken/btc/2020-01-02"] = (200, price_json(), {})
    monkeypatch.setenv("PRICE_SERVER_URL", stub.url + "/")
    worker = PriceWorker(exchanges=["kraken"], date="2020-01-02", http=NO_RETRY)

    records, error = run(worker, "btc")
    worker.close()

    assert error is None
    assert [(r.symbol, r.exchange, r.close) for r in records] == [("BTC", "kraken", 2.0)]


# --- malformed answers (crafted by the stub) ------------------------------------------


@pytest.mark.parametrize(
    ("body", "error_type", "reason"),
    [
        (b"{not json", PriceDataError, "bad JSON"),
        (b"", PriceDataError, "bad JSON"),
        (b'["a", "list"]', PriceDataError, "expected a price object"),
        (price_json(close="7,000"), InvalidPrice, "close '7,000' is not a number"),
        (price_json(volume=True), InvalidPrice, "volume True is not a number"),
        (price_json(high=None), PriceDataError, "lacks high"),
        (price_json(low=...), PriceDataError, "lacks low"),
        (price_json(open=..., volume=...), PriceDataError, "lacks open, volume"),
    ],
)
def test_malformed_price_fails_the_task_with_reason_and_url(
    make_worker: Any, stub: SimpleNamespace, body: bytes, error_type: type, reason: str
) -> None:
    stub.routes["/price/binance/btc/2020-01-02"] = (200, body, {})
    worker = make_worker(stub.url)

    records, error = run(worker, PriceTask("BTC", "binance", "2020-01-02"))

    assert records == []
    assert isinstance(error, error_type)
    assert reason in str(error)
    assert f"{stub.url}/price/binance/btc/2020-01-02" in str(error)


@pytest.mark.parametrize("declared", [True, False])
def test_response_over_max_bytes_fails(make_worker: Any, stub: SimpleNamespace, declared: bool) -> None:
    headers = {} if declared else {"Content-Length": None}  # None: stream it without a length
    stub.routes["/price/binance/btc/2020-01-02"] = (200, b" " * 5000 + price_json(), headers)
    worker = make_worker(stub.url, http={**NO_RETRY, "max_bytes": 1000})

    records, error = run(worker, {"symbol": "btc", "exchange": "binance", "date": "2020-01-02"})

    assert records == []
    assert error is not None and "over 1000" in str(error)


def test_symbol_is_escaped_in_the_url(make_worker: Any, stub: SimpleNamespace) -> None:
    worker = make_worker(stub.url)

    _, error = run(worker, PriceTask("../days", "bin ance", "2020-01-02"))

    assert stub.seen == ["/price/bin%20ance/..%2Fdays/2020-01-02"]
    assert error is not None and "404" in str(error)


def test_one_failed_exchange_keeps_the_others_records(make_worker: Any, stub: SimpleNamespace) -> None:
    stub.routes["/price/a/btc/2020-01-02"] = (200, price_json(close=10, high=40), {})
    stub.routes["/price/b/btc/2020-01-02"] = (503, b"down", {})
    stub.routes["/price/c/btc/2020-01-02"] = (200, price_json(close=30, high=40), {})
    stub.routes["/price/d/btc/2020-01-02"] = (200, b"<html>", {})
    worker = make_worker(stub.url, exchanges=["a", "b", "c", "d"], date="2020-01-02")

    records, error = run(worker, "btc")

    assert [(r.exchange, r.close) for r in records] == [("a", 10.0), ("c", 30.0)]
    assert isinstance(error, ExchangesFailed)
    assert set(error.failures) == {"b", "d"}
    assert "2 of 4 exchange(s) failed" in str(error)
    assert "b: 503" in str(error) and "d: bad JSON" in str(error)
    assert worker.counters["prices"] == 2


def test_task_dict_with_yaml_date_and_missing_keys(make_worker: Any, stub: SimpleNamespace) -> None:
    stub.routes["/price/kraken/eth/2020-01-02"] = (200, price_json(), {})
    worker = make_worker(stub.url)

    records, error = run(worker, {"symbol": "eth", "exchange": "kraken", "date": dt.date(2020, 1, 2)})
    assert error is None and records[0].price_date == dt.date(2020, 1, 2)

    _, error = run(worker, {"symbol": "eth", "date": "2020-01-02"})
    assert isinstance(error, ValueError) and "lacks exchange" in str(error)

    _, error = run(worker, 42)
    assert isinstance(error, TypeError)


def test_quote_page_mode_rejects_tasks(make_worker: Any, stub: SimpleNamespace) -> None:
    worker = make_worker(stub.url, mode="quote_page")

    _, error = run(worker, PriceTask("btc", "kraken", "2020-01-02"))

    assert isinstance(error, ValueError) and "mode 'api'" in str(error)
    assert stub.seen == []


# --- quote pages (crafted by the stub) --------------------------------------------------


@pytest.mark.parametrize(
    ("xpath", "expected"),
    [
        (None, 7247.5),  # default: the value of this symbol's element, not the sidebar's
        ('//fin-streamer[@data-symbol=$symbol][@data-field="regularMarketPrice"]', 7247.5),  # "7,247.50"
        ('//span[@class="alt-price"]', 12345678.9),
        ('//fin-streamer[@data-symbol=$symbol]/@value', 7247.5),
        ('number(//fin-streamer[@data-symbol="ETH"]/@value)', 130.1),
    ],
)
def test_quote_page_xpaths(make_worker: Any, stub: SimpleNamespace, xpath: str | None, expected: float) -> None:
    stub.routes["/quote/BTC"] = (200, QUOTE_HTML.encode(), {"Content-Type": "text/html"})
    worker = make_worker(stub.url, mode="quote_page", **({"xpath": xpath} if xpath else {}))

    records, error = run(worker, "btc")

    assert error is None
    [record] = records
    assert (record.symbol, record.exchange, record.close) == ("BTC", "quote", expected)
    assert record.open is record.high is record.low is record.volume is None
    assert record.price_date == dt.date(2020, 4, 30)  # "As of 2020-04-30 23:59 UTC"
    assert record.extracted_time.tzinfo is not None


@pytest.mark.parametrize(
    ("notice", "date_xpath"),
    [
        ("As of 2020-02-30 23:59 UTC.", None),  # not a day: ignored
        ("As of 4:00PM EDT. Market open.", None),
        ("", None),
        ("As of 2020-04-30 23:59 UTC.", ""),  # "" here means date_xpath=None: do not look
    ],
)
def test_quote_page_without_a_day_is_for_today(
    make_worker: Any, stub: SimpleNamespace, notice: str, date_xpath: str | None
) -> None:
    html = QUOTE_HTML.replace("As of 2020-04-30 23:59 UTC. Market open.", notice)
    stub.routes["/quote/BTC"] = (200, html.encode(), {"Content-Type": "text/html"})
    worker = make_worker(stub.url, mode="quote_page", **({"date_xpath": None} if date_xpath == "" else {}))

    before = dt.datetime.now(dt.timezone.utc).date()
    records, error = run(worker, "btc")
    after = dt.datetime.now(dt.timezone.utc).date()

    assert error is None
    assert records[0].price_date in (before, after)  # (midnight may pass in between)


@pytest.mark.parametrize(
    ("xpath", "body", "reason"),
    [
        ('//div[@id="nope"]', QUOTE_HTML, "no element matches //div[@id=\"nope\"]"),
        ("//h1", QUOTE_HTML, "non-numeric price 'Bitcoin'"),
        ('number(//div[@id="nope"])', QUOTE_HTML, "non-numeric price"),
        (None, "", "unreadable HTML"),
        (None, QUOTE_HTML.replace('"BTC"', '"XBT"'), "no element matches"),
        ("//fin-streamer[@data-symbol=$coin]", QUOTE_HTML, "cannot evaluate"),
    ],
)
def test_quote_page_problems_fail_with_reason_and_url(
    make_worker: Any, stub: SimpleNamespace, xpath: str | None, body: str, reason: str
) -> None:
    stub.routes["/quote/BTC"] = (200, body.encode(), {"Content-Type": "text/html"})
    worker = make_worker(stub.url, mode="quote_page", **({"xpath": xpath} if xpath else {}))

    records, error = run(worker, "BTC")

    assert records == []
    assert isinstance(error, PriceDataError)
    assert reason in str(error)
    assert f"{stub.url}/quote/BTC" in str(error)


# --- against the crypto_server mock ----------------------------------------------------


def expected_record(dataset: Any, exchange: str, symbol: str, day: dt.date) -> tuple | None:
    price = dataset.price(exchange, symbol, day)
    if price is None:
        return None
    return (symbol.upper(), exchange, day, *(float(price[f]) for f in ("open", "high", "low", "close", "volume")))


def as_tuple(record: PriceRecord) -> tuple:
    return (record.symbol, record.exchange, record.price_date, record.open, record.high, record.low,
            record.close, record.volume)


def sample_keys(dataset: Any, count: int, *, has_price: bool = True) -> list[tuple[str, str, dt.date]]:
    """``count`` (exchange, symbol, day) spread over the dataset, with (or without) a price."""
    keys = []
    days = list(dataset.days)
    for n, (symbol, exchange) in enumerate(itertools.product(dataset.symbols[::7], dataset.exchanges)):
        for day in days[n % len(days)::17]:
            if (dataset.price(exchange, symbol, day) is not None) == has_price:
                keys.append((exchange, symbol, day))
                break
        if len(keys) == count:
            return keys
    raise AssertionError("the dataset has too few such keys")


def test_api_tasks_equal_the_dataset(make_worker: Any, price_server: Any) -> None:
    dataset = price_server.dataset
    worker = make_worker(price_server.url)
    keys = sample_keys(dataset, 12)

    got = []
    for n, (exchange, symbol, day) in enumerate(keys):
        # Both task forms, and mixed-case symbols.
        task = PriceTask(symbol.title(), exchange, day.isoformat()) if n % 2 else \
            {"symbol": symbol, "exchange": exchange, "date": day.isoformat()}
        records, error = run(worker, task)
        assert error is None
        got += records

    assert [as_tuple(r) for r in got] == [expected_record(dataset, *key) for key in keys]
    assert all(r.extracted_time.tzinfo is dt.timezone.utc for r in got)
    assert _own(worker.counters) == {"prices": 12}


def test_symbol_on_all_exchanges_for_the_latest_day(make_worker: Any, price_server: Any) -> None:
    dataset = price_server.dataset
    worker = make_worker(price_server.url, exchanges="all", date="latest")
    last = dataset.days.last

    got: list[PriceRecord] = []
    for symbol in ("btc", "ETH", dataset.symbols[-1]):
        records, error = run(worker, symbol)
        assert error is None
        got += records

    expected = [
        expected_record(dataset, e, s, last) for s in ("btc", "eth", dataset.symbols[-1]) for e in dataset.exchanges
    ]
    assert [as_tuple(r) for r in got] == [e for e in expected if e is not None]
    assert worker.counters["prices"] == len(got)
    assert worker.counters["no_data"] == expected.count(None)


def test_a_day_without_price_is_no_data(make_worker: Any, price_server: Any) -> None:
    [(exchange, symbol, day)] = sample_keys(price_server.dataset, 1, has_price=False)
    worker = make_worker(price_server.url, exchanges=[exchange], date=day.isoformat())

    records, error = run(worker, symbol)

    assert (records, error) == ([], None)
    assert _own(worker.counters) == {"no_data": 1}


def test_unknown_symbol_or_exchange_fails_with_404(make_worker: Any, price_server: Any) -> None:
    worker = make_worker(price_server.url, exchanges=["kraken", "nowhere"], date="2020-03-01")

    records, error = run(worker, "notacoin")
    assert records == []
    assert isinstance(error, ExchangesFailed) and set(error.failures) == {"kraken", "nowhere"}
    assert "404" in str(error) and "/price/kraken/notacoin/2020-03-01" in str(error)

    records, error = run(worker, "btc")  # kraken answers; the unknown exchange fails the item
    assert [r.exchange for r in records] == ["kraken"]
    assert isinstance(error, ExchangesFailed) and set(error.failures) == {"nowhere"}
    assert "nowhere: 404" in str(error)


def test_quote_page_prices(make_worker: Any, price_server: Any) -> None:
    dataset = price_server.dataset
    exact = make_worker(price_server.url, mode="quote_page")
    # The visible text, "6,245.73": thousands separators and 2 (or 6, below 1) decimals.
    shown = make_worker(
        price_server.url, mode="quote_page",
        xpath='//fin-streamer[@data-symbol=$symbol][@data-field="regularMarketPrice"]',
    )
    symbols = [s for s in dataset.symbols if dataset.quote(s)["price"] >= 1000][:3] + dataset.symbols[:3]
    assert any(dataset.quote(s)["price"] >= 1000 for s in symbols)  # the separators are exercised

    for symbol in symbols:
        quote = dataset.quote(symbol)
        [record], error = run(exact, symbol)
        assert error is None
        assert (record.symbol, record.exchange, record.close) == (symbol.upper(), "quote", quote["price"])
        assert record.price_date == dt.date.fromisoformat(quote["day"])
        [record], error = run(shown, symbol)
        assert error is None
        assert record.close == pytest.approx(quote["price"], abs=0.005 if quote["price"] >= 1 else 5e-7)


def test_quote_page_unknown_symbol_fails_with_404(make_worker: Any, price_server: Any) -> None:
    records, error = run(make_worker(price_server.url, mode="quote_page"), "notacoin")

    assert records == [] and error is not None and "404" in str(error)


# --- faults: retries, rate limits ------------------------------------------------------

FAST_RETRY = {"retries": 12, "backoff": 0.01, "backoff_max": 0.05, "connect_timeout": 2, "read_timeout": 5}


def test_injected_errors_are_retried(make_worker: Any, start_price_server: Any) -> None:
    server = start_price_server(error_rate=0.3, seed=3)
    dataset = server.dataset
    worker = make_worker(server.url, exchanges="all", date="2020-02-14", http=FAST_RETRY)

    got: list[PriceRecord] = []
    for symbol in dataset.symbols[:6]:
        records, error = run(worker, symbol)
        assert error is None
        got += records

    assert server.stats.errors_injected > 0  # the retry path was taken
    expected = [expected_record(dataset, e, s, dt.date(2020, 2, 14)) for s in dataset.symbols[:6] for e in dataset.exchanges]
    assert [as_tuple(r) for r in got] == [e for e in expected if e is not None]


def test_rate_limited_requests_are_retried_after_waiting(make_worker: Any, start_price_server: Any) -> None:
    # 3 threads, one worker object each as in the engine, against 10 requests per second server-wide.
    server = start_price_server(rate_limit=10)
    dataset = server.dataset
    keys = sample_keys(dataset, 24)
    workers = [make_worker(server.url, http={**FAST_RETRY, "max_retry_after": 1}) for _ in range(3)]
    results: list[list[tuple]] = [[] for _ in workers]
    errors: list[Exception] = []

    def fetch(n: int) -> None:
        for exchange, symbol, day in keys[n::3]:
            records, error = run(workers[n], PriceTask(symbol, exchange, day.isoformat()))
            results[n] += [as_tuple(r) for r in records]
            errors.extend([error] if error else [])

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert server.stats.rate_limited > 0
    assert errors == []
    assert sorted(sum(results, [])) == sorted(expected_record(dataset, *key) for key in keys)


def test_without_retries_a_server_error_fails_the_item_with_its_status(
    make_worker: Any, start_price_server: Any
) -> None:
    server = start_price_server(error_rate=1.0, seed=1)
    worker = make_worker(server.url, exchanges=["kraken"], date="2020-03-01", http={"retries": 0})

    records, error = run(worker, "btc")
    assert records == [] and error is not None
    assert re.search(r"kraken: 50[03] Server Error", str(error)), error

    server.set_faults(error_rate=0.0)  # the same worker object recovers once the server does
    records, error = run(worker, "btc")
    assert error is None and len(records) == 1
    assert server.stats.requests == 2


# --- prepare_stage ---------------------------------------------------------------------


def test_prepare_stage_checks_the_server_and_exchanges(price_server: Any, stub: SimpleNamespace) -> None:
    PriceWorker.prepare_stage({"base_url": price_server.url, "exchanges": ["kraken", "bitstamp"]})
    PriceWorker.prepare_stage({"base_url": stub.url, "mode": "quote_page"})  # no JSON API there: not asked

    with pytest.raises(ValueError, match="unknown exchange.*binance; the server has bitfinex"):
        PriceWorker.prepare_stage({"base_url": price_server.url, "exchanges": ["kraken", "binance"]})
    with pytest.raises(RuntimeError, match=f"price server at {stub.url} cannot be used: 404"):
        PriceWorker.prepare_stage({"base_url": stub.url, "http": NO_RETRY})
    with pytest.raises(ValueError, match="unknown mode"):
        PriceWorker.prepare_stage({"base_url": price_server.url, "mode": "web"})


@pytest.mark.parametrize("item", [
    "B" * 10_000_000,
    PriceTask("B" * 10_000_000, "kraken", "2020-01-02"),
    {"symbol": "btc", "exchange": "k" * 10_000_000, "date": "2020-01-02"},
    "BTC\x00",
])
def test_an_absurd_symbol_or_exchange_fails_before_any_request_with_a_short_message(
    make_worker: Any, stub: SimpleNamespace, item: Any
) -> None:
    worker = make_worker(stub.url, exchanges=["kraken"], date="2020-01-02")

    records, error = run(worker, item)

    assert records == [] and stub.seen == []
    assert isinstance(error, ValueError) and len(str(error)) < 120, str(error)[:300]


def _own(counters: Mapping[str, float]) -> dict[str, float]:
    """The worker's own counters, without its HTTP client's (``http.*``)."""
    return {k: v for k, v in counters.items() if not k.startswith("http.")}
