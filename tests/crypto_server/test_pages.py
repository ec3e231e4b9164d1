"""The HTML pages parse like the real sites they imitate."""

from __future__ import annotations

import math

from bs4 import BeautifulSoup
from flask.testing import FlaskClient
from lxml import html as lxml_html

from crypto_server import Dataset


def wiki(client: FlaskClient) -> BeautifulSoup:
    response = client.get("/wiki/List_of_cryptocurrencies")
    assert response.status_code == 200 and response.mimetype == "text/html"
    return BeautifulSoup(response.data, "lxml")


def test_first_wikitable_lists_the_symbols_of_the_api(client: FlaskClient, dataset: Dataset) -> None:
    table = wiki(client).select_one("table.wikitable")
    assert "sortable" in table["class"] and table.get("id")
    rows = table.find_all("tr")
    headers = [th.get_text(strip=True) for th in rows[0].find_all("th")]
    assert headers[:3] == ["Currency", "Symbol", "Founded"]
    column = headers.index("Symbol")
    symbols = []
    for row in rows[1:]:
        cell = row.find_all(["th", "td"])[column]
        for note in cell.select("sup.reference"):
            note.decompose()
        symbols.append(cell.get_text(strip=True))
    assert sorted(symbols) == [s.upper() for s in dataset.symbols]


def test_wiki_page_has_real_world_noise(client: FlaskClient) -> None:
    page = wiki(client)
    table = page.select_one("table.wikitable")
    assert page.find("table") is not table, "another table (a message box) comes first"
    assert table.select('th[scope="row"]'), "row headers before the data cells"
    symbol_cells = [row.find_all(["th", "td"])[1] for row in table.find_all("tr")[1:]]
    assert any(c.select_one("sup.reference") for c in symbol_cells)
    assert any("\xa0" in c.get_text() for c in symbol_cells)
    assert any(c.get_text() != c.get_text().strip() for c in symbol_cells)
    assert any(c.select_one("a") for c in symbol_cells) and any(c.select_one("span span") for c in symbol_cells)
    assert table.select("[data-sort-value]")
    # A naive scraper that takes every cell text gets footnote marks too.
    assert any("[" in c.get_text() for c in symbol_cells)
    tables = page.select("table.wikitable")
    assert len(tables) == 2
    second_symbols = {row.find_all(["th", "td"])[1].get_text(strip=True) for row in tables[1].find_all("tr")[1:]}
    assert second_symbols and not second_symbols & {c.get_text(strip=True) for c in symbol_cells}


def test_quote_page_price_found_by_xpath(client: FlaskClient, dataset: Dataset) -> None:
    response = client.get("/quote/btc")
    assert response.status_code == 200 and response.mimetype == "text/html"
    tree = lxml_html.fromstring(response.data)
    [price] = tree.xpath('//fin-streamer[@data-symbol="BTC"][@data-field="regularMarketPrice"]')
    expected = dataset.quote("btc")["price"]
    assert float(price.get("value")) == expected
    text = price.text_content()
    assert "," in text and float(text.replace(",", "")) == round(expected, 2)
    # Other assets' prices are on the page too: only data-symbol picks the right one.
    assert len(tree.xpath('//fin-streamer[@data-field="regularMarketPrice"]')) > 1


def test_quote_page_for_small_prices_and_case(client: FlaskClient, dataset: Dataset) -> None:
    tree = lxml_html.fromstring(client.get("/quote/Doge").data)
    [price] = tree.xpath('//fin-streamer[@data-symbol="DOGE"][@data-field="regularMarketPrice"]')
    assert float(price.get("value")) == dataset.quote("doge")["price"] < 1
    assert math.isclose(float(price.text_content()), dataset.quote("doge")["price"], rel_tol=1e-3)
