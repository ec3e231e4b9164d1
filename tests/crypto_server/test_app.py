"""Every endpoint and error through the Flask test client."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto_server
from crypto_server import Dataset


def test_exchanges(client: FlaskClient, dataset: Dataset) -> None:
    response = client.get("/exchanges")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == dataset.exchanges == sorted(dataset.exchanges)
    assert "coinbase-pro" in response.json


def test_symbols(client: FlaskClient, dataset: Dataset) -> None:
    response = client.get("/symbols")
    assert response.status_code == 200
    assert response.json == dataset.symbols
    assert response.json[:2] == ["ada", "ae"]


def test_days(client: FlaskClient) -> None:
    assert client.get("/days").json == {"first": "2019-12-20", "last": "2020-04-30"}


def test_price(client: FlaskClient, dataset: Dataset) -> None:
    response = client.get("/price/bitstamp/btc/2020-01-15")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.json
    assert body == dataset.price("bitstamp", "btc", "2020-01-15")
    # The tutorial server's field order.
    assert list(body) == ["exchange", "symbol", "open", "high", "low", "close", "volume", "day"]


def test_symbol_is_case_insensitive(client: FlaskClient) -> None:
    lower = client.get("/price/kraken/eth/2020-02-03").json
    assert client.get("/price/kraken/ETH/2020-02-03").json == lower
    assert client.get("/price/kraken/Eth/2020-02-03").json["symbol"] == "eth"


def test_no_price_that_day_is_null_with_200(client: FlaskClient, dataset: Dataset) -> None:
    exchange, symbol, day = next(
        (e, s, d) for s in dataset.symbols for e in dataset.exchanges for d in dataset.days
        if dataset.price(e, s, d) is None
    )  # fmt: skip
    response = client.get(f"/price/{exchange}/{symbol}/{day}")
    assert response.status_code == 200
    assert response.data.strip() == b"null"
    before = client.get("/price/kraken/btc/2019-01-01")
    assert before.status_code == 200 and before.json is None


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/price/nowhere/btc/2020-01-15", 404, "unknown exchange 'nowhere'"),
        ("/price/kraken/nocoin/2020-01-15", 404, "unknown symbol 'nocoin'"),
        ("/price/kraken/btc/2020-13-01", 400, "invalid date"),
        ("/price/kraken/btc/2020-02-30", 400, "invalid date"),
        ("/price/kraken/btc/20200115", 400, "YYYY-MM-DD"),
        ("/price/kraken/btc/yesterday", 400, "YYYY-MM-DD"),
        ("/price/kraken/btc", 404, "not found"),
        ("/quote/nocoin", 404, "unknown symbol 'nocoin'"),
        ("/nothing/here", 404, "not found"),
        ("/wiki/Bitcoin", 404, "not found"),
        ("/lookup?exchange=kraken&symbol=btc", 400, "required"),
    ],
)
def test_errors_are_json(client: FlaskClient, path: str, status: int, says: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.json["status"] == status
    assert says in response.json["message"].lower() or says in response.json["message"]


def test_wrong_method_is_405_json_with_allow(client: FlaskClient) -> None:
    response = client.post("/exchanges")
    assert response.status_code == 405
    assert response.json["status"] == 405
    assert "GET" in response.headers["Allow"]


def test_unhandled_error_is_500_json(app: crypto_server.CryptoServerApp) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json["status"] == 500
    assert "boom" not in response.get_data(as_text=True), "no traceback or detail leaks"


def test_index_page_has_a_working_lookup_form(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for path in ("/exchanges", "/symbols", "/days", "/price/", "/wiki/List_of_cryptocurrencies", "/quote/"):
        assert path in html
    assert '<form action="/lookup"' in html
    assert "http://" not in html and "https://" not in html and "<script" not in html, "works offline"
    redirect = client.get("/lookup?exchange=kraken&symbol=BTC&date=2020-02-02")
    assert redirect.status_code == 302
    assert redirect.headers["Location"].endswith("/price/kraken/BTC/2020-02-02")
    followed = client.get("/lookup?exchange=kraken&symbol=BTC&date=2020-02-02", follow_redirects=True)
    assert followed.json == client.get("/price/kraken/btc/2020-02-02").json


def test_debug_mode_is_off(app: crypto_server.CryptoServerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.debug is False
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert crypto_server.create_app(app.dataset).debug is False
    with pytest.raises(RuntimeError):
        app.run(debug=True)


def test_custom_dataset_is_served(client: FlaskClient) -> None:
    from .conftest import CSV_DIR

    app = crypto_server.create_app(crypto_server.load_dataset(CSV_DIR))
    c = app.test_client()
    assert c.get("/exchanges").json == ["bitstamp", "kraken"]
    assert c.get("/days").json == {"first": "2020-04-27", "last": "2020-04-30"}
    assert c.get("/price/kraken/btc/2020-04-30").json["close"] == 8637.5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_api_answers_what_the_dataset_says(client: FlaskClient, dataset: Dataset, data: st.DataObject) -> None:
    exchange = data.draw(st.sampled_from(dataset.exchanges))
    symbol = data.draw(st.sampled_from(dataset.symbols))
    day = data.draw(st.dates(dataset.days.first - dt.timedelta(days=3), dataset.days.last + dt.timedelta(days=3)))
    response = client.get(f"/price/{exchange}/{symbol.upper()}/{day}")
    assert response.status_code == 200
    assert response.json == dataset.price(exchange, symbol, day)
