"""Tests for workers.wiki_worker: parsing on fixture pages, then the worker over real HTTP."""

from __future__ import annotations

import threading
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from engine.contract import ItemsFailed
from workers.wiki_worker import MAX_CELL_CHARS, MAX_CELL_DEPTH, FailedRow, WikiWorker, extract_column, read_column

FIXTURES = Path(__file__).parent / "fixtures" / "wiki"
BUNDLED = "crypto_bundled.html"
SP500 = "sp500_constituents.html"
WIKIPEDIA_CRYPTO = "crypto_wikipedia.html"
SHAPES = "crypto_shapes.html"


def page(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def table(header: str, *rows: str, attrs: str = 'class="wikitable"') -> str:
    """A page with one table: ``header`` and ``rows`` are the inner HTML of <tr>s."""
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return f"<html><body><table {attrs}><tr>{header}</tr>{body}</table></body></html>"


# --- the three kinds of markup ---------------------------------------------------


def test_bundled_page_first_wikitable_with_defaults() -> None:
    assert extract_column(page(BUNDLED)) == ["BTC", "ETH", "LTC", "XRP", "DOGE", "ADA", "SOL"]


def test_sp500_constituents_by_table_id() -> None:
    symbols = extract_column(page(SP500), table_id="constituents", column="Symbol")
    assert symbols == ["MMM", "AOS", "AAPL", "BRK.B", "BF.B", "ZTS"]


def test_wikipedia_crypto_multirow_header_rowspan_and_row_headers() -> None:
    # The 2011 row header spans two rows: Namecoin's row has no Release cell of its own,
    # so without rowspan expansion its Symbol would be read from the Founder(s) column.
    assert extract_column(page(WIKIPEDIA_CRYPTO)) == ["BTC", "LTC", "NMC", "XRP", "DOGE", "ETH", "ZEC"]


def test_wikipedia_crypto_column_under_a_colspan_group_header() -> None:
    # "Consensus mechanism" sits in the second header row, under "Blockchain" (colspan=2);
    # Namecoin's data cell spans both blockchain columns.
    values = extract_column(page(WIKIPEDIA_CRYPTO), column="Consensus mechanism")
    assert values == ["PoW", "SHA-256d, merged mining with bitcoin", "Consensus", "PoS"]


# --- finding the table and the column ----------------------------------------------


def test_table_id_picks_a_table_that_is_not_the_first() -> None:
    assert extract_column(page(SP500), table_id="changes", column="Ticker") == ["KKR", "CRWD", "SMCI"]


def test_table_id_wins_over_table_selector() -> None:
    symbols = extract_column(page(SP500), table_id="constituents", table_selector="table#changes")
    assert symbols[0] == "MMM"


def test_table_by_css_selector() -> None:
    second = extract_column(page(BUNDLED), table_selector="table.wikitable ~ table.wikitable")
    assert second == ["BCC", "LUNC"]


def test_selector_skips_matches_that_are_not_tables() -> None:
    html = '<div class="wikitable">decoy</div>' + table("<th>Symbol</th>", "<td>BTC</td>")
    assert extract_column(html) == ["BTC"]


@pytest.mark.parametrize("column", ["symbol", "SYMBOL", " Symbol ", "sYmBoL"])
def test_header_match_ignores_case_and_surrounding_space(column: str) -> None:
    assert extract_column(page(BUNDLED), column=column)[:2] == ["BTC", "ETH"]


def test_header_text_is_cleaned_like_cells() -> None:
    html = table(
        '<th>Name</th><th>\n<a href="/wiki/Ticker_symbol">Symbol</a>&nbsp;<sup class="reference">[1]</sup></th>',
        "<td>Bitcoin</td><td>BTC</td>",
    )
    assert extract_column(html) == ["BTC"]


def test_colspan_in_header_shifts_the_column_index() -> None:
    html = table(
        '<th colspan="2">Name</th><th>Symbol</th>',
        "<td>Bitcoin</td><td>bitcoin.org</td><td>BTC</td>",
        "<td>Ether</td><td>ethereum.org</td><td>ETH</td>",
    )
    assert extract_column(html) == ["BTC", "ETH"]


def test_rowspan_and_colspan_in_data_rows_of_other_columns() -> None:
    html = table(
        "<th>Year</th><th>Name</th><th>Site</th><th>Symbol</th>",
        '<td rowspan="2">2011</td><td colspan="2">Litecoin</td><td>LTC</td>',
        "<td>Namecoin</td><td>namecoin.org</td><td>NMC</td>",
    )
    assert extract_column(html) == ["LTC", "NMC"]


def test_header_in_thead_with_td_rows_in_tbody() -> None:
    html = (
        '<table class="wikitable"><thead><tr><th>Name</th><th>Symbol</th></tr></thead>'
        "<tbody><tr><td>Bitcoin</td><td>BTC</td></tr></tbody></table>"
    )
    assert extract_column(html) == ["BTC"]


def test_rows_of_a_nested_table_are_not_rows_of_the_outer_table() -> None:
    html = table(
        "<th>Name</th><th>Symbol</th>",
        "<td><table><tr><td>x</td><td>NOT-A-SYMBOL</td></tr></table></td><td>BTC</td>",
    )
    assert extract_column(html) == ["BTC"]


def test_missing_table_says_which_table_and_page() -> None:
    with pytest.raises(LookupError, match=r"^no table matching 'table#constituents' on http://wiki\.test/p$"):
        extract_column(page(BUNDLED), table_id="constituents", source="http://wiki.test/p")


def test_missing_table_by_selector() -> None:
    with pytest.raises(LookupError, match=r"no table matching 'table\.wikitable' on <html>"):
        extract_column("<html><body><table><tr><th>Symbol</th></tr></table></body></html>")


def test_missing_column_lists_the_columns_there_are() -> None:
    with pytest.raises(LookupError) as info:
        extract_column(page(SP500), table_id="constituents", column="Ticker", source="http://wiki.test/sp")
    assert str(info.value) == (
        "no column 'Ticker' in table#constituents on http://wiki.test/sp; columns are: "
        "Symbol, Security, GICS Sector, GICS Sub-Industry, Headquarters Location, Date added, CIK, Founded"
    )


def test_empty_table_has_no_columns() -> None:
    with pytest.raises(LookupError, match=r"no column 'Symbol' .*; columns are: \(none\)"):
        extract_column('<table class="wikitable"></table>')


def test_a_column_only_in_data_rows_is_not_a_header() -> None:
    html = table("<th>Name</th><th>Code</th>", "<td>Symbol</td><td>BTC</td>")
    with pytest.raises(LookupError, match="columns are: Name, Code"):
        extract_column(html)


# --- cell values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("BTC[3]", "BTC"),
        ("\u00a0ETH ", "ETH"),
        ("&nbsp;ETH&#160;", "ETH"),
        ('XRP<sup id="cite_ref-3" class="reference"><a href="#cite_note-3">[3]</a></sup>', "XRP"),
        ("DOGE [a][12]", "DOGE"),
        ("ADA<sup>†</sup>", "ADA"),
        ('<a href="/wiki/Solana"><span class="nowrap"><b>SOL</b></span></a>', "SOL"),
        ('<span data-sort-value="LTC">\n  LTC\n</span>', "LTC"),
        ("<!-- was XBT -->BTC", "BTC"),
        ("\u200bZEC\u200e", "ZEC"),
        ("BRK.B", "BRK.B"),
        ("USD\u00a0Coin", "USD Coin"),  # inner whitespace is collapsed to one space, not removed
        ("[1]BTC", "[1]BTC"),  # only trailing markers are footnotes
    ],
)
def test_cell_cleaning(cell: str, expected: str) -> None:
    assert extract_column(table("<th>Symbol</th>", f"<td>{cell}</td>")) == [expected]


def test_empty_cells_and_short_rows_are_skipped() -> None:
    html = table(
        "<th>Name</th><th>Symbol</th>",
        "<td>Bitcoin</td><td>BTC</td>",
        "<td>Empty</td><td></td>",
        "<td>Only footnote</td><td>&nbsp;<sup class='reference'>[4]</sup></td>",
        "<td>Short row</td>",
        "",
        "<td>Ether</td><td>ETH</td>",
    )
    assert extract_column(html) == ["BTC", "ETH"]


def test_subheader_rows_between_data_rows_are_skipped() -> None:
    html = table(
        "<th>Name</th><th>Symbol</th>",
        "<td>Bitcoin</td><td>BTC</td>",
        '<th colspan="2">Defunct</th>',
        "<th>Name</th><th>Symbol</th>",
        "<td>BitConnect</td><td>BCC</td>",
    )
    assert extract_column(html) == ["BTC", "BCC"]


def test_duplicates_are_yielded_once_in_page_order() -> None:
    rows = [f"<td>{s}</td>" for s in ["BTC", "ETH", "BTC[1]", "\u00a0ETH", "SOL", "BTC"]]
    assert extract_column(table("<th>Symbol</th>", *rows)) == ["BTC", "ETH", "SOL"]


def test_limit_counts_distinct_symbols() -> None:
    rows = [f"<td>{s}</td>" for s in ["BTC", "BTC", "", "ETH", "SOL", "ADA"]]
    assert extract_column(table("<th>Symbol</th>", *rows), limit=2) == ["BTC", "ETH"]
    assert extract_column(page(BUNDLED), limit=100) == extract_column(page(BUNDLED))


@given(
    st.lists(
        st.one_of(st.just(""), st.from_regex(r"[A-Z0-9]{1,6}(\.[A-Z])?", fullmatch=True)),
        max_size=30,
    ),
    st.none() | st.integers(min_value=1, max_value=10),
)
def test_any_column_with_noise_round_trips(symbols: list[str], limit: int | None) -> None:
    # Each symbol wrapped the way wiki pages do it; values come back cleaned, distinct, in order.
    rows = [
        f'<th scope="row">row {i}</th><td>&nbsp;<a href="/wiki/{s}"><span>{s}</span></a>'
        f'<sup class="reference"><a href="#cite_note-{i}">[{i}]</a></sup> </td>'
        for i, s in enumerate(symbols)
    ]
    expected = list(dict.fromkeys(s for s in symbols if s))[:limit]
    assert extract_column(table("<th>Name</th><th>Symbol</th>", *rows), limit=limit) == expected


# --- real page shapes ------------------------------------------------------------------


def test_shapes_page_primary_tickers_without_section_rows() -> None:
    found = read_column(page(SHAPES), ticker=True)
    assert found.values == ["BTC", "LTC", "NMC", "XRP", "DOGE", "ETH", "ZEC", "BCH", "stETH", "AUR"]
    assert found.failures == []


def test_section_rows_are_not_values_even_as_plain_text() -> None:
    values = extract_column(page(SHAPES))
    assert not {"Active", "Defunct", "Withdrawn entries"} & set(values)
    assert values[:3] == ["BTC, XBT, ₿", "LTC, Ł", "NMC"]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("BTC, XBT, ₿", "BTC"),
        ("BTC / XBT", "BTC"),
        ("BTC/XBT", "BTC"),
        ("XBT (BTC)", "XBT"),
        ("Bitcoin (BTC)", "BTC"),
        ("₿ BTC", "BTC"),
        ("Ξ ETH", "ETH"),
        ("BRK.B", "BRK.B"),
        ("BF-B", "BF-B"),
        ("1INCH", "1INCH"),
        ("stETH", "stETH"),
        ("DOGE; XDG", "DOGE"),
        ("BTC[1]", "BTC"),
        ("<b>XRP</b><br>Ripples", "XRP"),
    ],
)
def test_a_cell_of_several_codes_gives_the_first_that_looks_like_a_ticker(cell: str, expected: str) -> None:
    html = table("<th>Symbol</th>", f"<td>{cell}</td>")
    assert read_column(html, ticker=True).values == [expected]
    assert WikiWorker().ticker is True  # the worker reads tickers unless told otherwise


def test_a_cell_of_signs_only_is_empty_and_one_of_words_without_a_ticker_fails_its_row() -> None:
    html = table("<th>Symbol</th>", "<td>BTC</td>", "<td>&mdash;</td>", "<td>₿</td>", "<td>see notes</td>", "<td>ETH</td>")
    found = read_column(html, ticker=True, source="http://wiki/x")
    assert found.values == ["BTC", "ETH"]
    ((row, error),) = found.failures
    assert (row.page, row.row, row.column, row.cell) == ("http://wiki/x", 5, "Symbol", "<td>see notes</td>")
    assert str(error) == "row 5 of table.wikitable on http://wiki/x: no ticker in 'see notes'"


@pytest.mark.parametrize(
    "row",
    [
        '<td colspan="3">Stablecoins</td>',
        '<td colspan="2"><b>Defunct</b></td>',
        '<td colspan="2">Withdrawn</td><td>\u00a0</td>',
        '<th colspan="3" scope="row">Forks</th>',
    ],
)
def test_a_full_width_section_row_is_not_a_symbol(row: str) -> None:
    html = table("<th>Name</th><th>Symbol</th><th>Year</th>", "<td>Bitcoin</td><td>BTC</td><td>2009</td>", row,
                 "<td>Ether</td><td>ETH</td><td>2015</td>")
    assert extract_column(html) == ["BTC", "ETH"]
    assert read_column(html, ticker=True).values == ["BTC", "ETH"]


def test_a_spanning_cell_in_a_row_with_other_values_is_data() -> None:
    html = table("<th>Name</th><th>Symbol</th><th>Year</th>", '<td colspan="2">BTC</td><td>2009</td>')
    assert extract_column(html) == ["BTC"]


def _nested(depth: int, text: str = "BTC") -> str:
    return "<span>" * depth + text + "</span>" * depth


@pytest.mark.parametrize("depth", [MAX_CELL_DEPTH + 1, 5_000, 20_000])
def test_a_cell_nested_thousands_deep_fails_its_row_only(depth: int) -> None:
    cell = f"<td>{_nested(depth)}</td>"
    html = table("<th>Symbol</th>", "<td>ETH</td>", cell, "<td>LTC</td>")
    for ticker in (False, True):
        found = read_column(html, ticker=ticker, source="http://wiki/deep")
        assert found.values == ["ETH", "LTC"]
        ((row, error),) = found.failures
        assert (row.row, row.cell) == (3, cell)  # the whole cell, for the dead-letter file
        assert str(error) == f"row 3 of table.wikitable on http://wiki/deep: cell nested more than {MAX_CELL_DEPTH} tags deep"


def test_a_cell_nested_as_deep_as_allowed_is_read() -> None:
    html = table("<th>Symbol</th>", f"<td>{_nested(MAX_CELL_DEPTH - 1)}</td>")
    assert extract_column(html) == ["BTC"]


def test_a_deeply_nested_header_cell_names_no_column_and_the_page_still_reads() -> None:
    html = table(f"<th>{_nested(5_000, 'Symbol')}</th><th>Symbol</th>", "<td>x</td><td>BTC</td>")
    assert extract_column(html) == ["BTC"]


@pytest.mark.parametrize("ticker", [False, True])
def test_a_10_mb_cell_fails_its_row_with_a_short_message_and_is_kept_whole(ticker: bool) -> None:
    huge = "BTC " * 2_500_000
    html = table("<th>Symbol</th>", "<td>ETH</td>", f"<td>{huge}</td>", "<td>LTC</td>")
    found = read_column(html, ticker=ticker, source="http://wiki/huge")
    assert found.values == ["ETH", "LTC"]
    ((row, error),) = found.failures
    assert row.cell == f"<td>{huge}</td>"
    assert str(error) == f"row 3 of table.wikitable on http://wiki/huge: cell text is over {MAX_CELL_CHARS:,} characters"
    assert len(repr(row)) < 100  # logs name the row, not its 10 MB


def test_footnote_markers_are_peeled_in_linear_time() -> None:
    # A regex anchored at the end backtracks quadratically over thousands of "[]".
    cell = "BTC" + "[]" * (MAX_CELL_CHARS // 2 - 10)
    assert extract_column(table("<th>Symbol</th>", f"<td>{cell}</td>")) == ["BTC"]


def test_worker_passes_the_good_rows_and_fails_the_bad_ones_as_items(wiki: _WikiServer, make_worker) -> None:
    body = table("<th>Symbol</th>", "<td>BTC, XBT</td>", f"<td>{_nested(3_000)}</td>", "<td>ETH</td>",
                 f"<td>{'X' * (MAX_CELL_CHARS + 1)}</td>")
    wiki.script["/wiki/shapes"] = [(200, {"Content-Type": "text/html; charset=utf-8"}, body.encode())]
    url = f"{wiki.url}/wiki/shapes"
    with pytest.raises(ItemsFailed) as caught:
        make_worker().process(url)
    assert caught.value.outputs == ["BTC", "ETH"]
    rows = [row for row, _ in caught.value.failures]
    assert [(row.page, row.row) for row in rows] == [(url, 3), (url, 5)]
    assert all(isinstance(row, FailedRow) for row in rows)


# --- params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit must be a positive integer"),
        ({"limit": -3}, "limit must be a positive integer"),
        ({"limit": "10"}, "limit must be a positive integer"),
        ({"limit": True}, "limit must be a positive integer"),
        ({"limit": 2.5}, "limit must be a positive integer"),
        ({"column": ""}, "column must be a non-empty string"),
        ({"column": 3}, "column must be a non-empty string"),
        ({"table_id": ""}, "table_id must be a non-empty string or None"),
        ({"table_selector": ""}, "table_selector must be a non-empty CSS selector"),
        ({"table_selector": "table[["}, "is not a valid CSS selector"),
        ({"http": ["retries", 3]}, "http must be a mapping"),
        ({"http": {"retry": 3}}, "bad http params"),
        ({"ticker": "yes"}, "ticker must be true or false"),
    ],
)
def test_bad_params_raise_value_error(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WikiWorker(**params)
    with pytest.raises(ValueError, match=message):  # before the run, by the same check
        WikiWorker.prepare_stage(params)


def test_extract_column_checks_its_arguments_too() -> None:
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        extract_column(page(BUNDLED), limit=0)


def test_unknown_param_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        WikiWorker(colum="Symbol")  # type: ignore[call-arg]


def test_http_params_reach_the_client() -> None:
    worker = WikiWorker(http={"read_timeout": 5, "connect_timeout": 1, "retries": 3})
    try:
        assert worker._http.timeout == (1, 5)
    finally:
        worker.close()


# --- over real HTTP -----------------------------------------------------------------


class _WikiHandler(BaseHTTPRequestHandler):
    """Serves fixture files at /wiki/<name>; ``server.script[path]`` queues canned answers first."""

    server: _WikiServer

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        script = self.server.script.get(self.path)
        if script:
            status, headers, body = script.pop(0)
        elif self.path.startswith("/wiki/") and (FIXTURES / self.path.removeprefix("/wiki/")).is_file():
            status, headers, body = 200, {"Content-Type": "text/html; charset=utf-8"}, page(self.path[6:])
        else:
            status, headers, body = 404, {"Content-Type": "text/html"}, b"<html><body>Not Found</body></html>"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _WikiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WikiHandler)
        self.script: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.hits: Counter[str] = Counter()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def _wiki_server() -> Iterator[_WikiServer]:
    server = _WikiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def wiki(_wiki_server: _WikiServer) -> Iterator[_WikiServer]:
    _wiki_server.script.clear()
    _wiki_server.hits.clear()
    yield _wiki_server


@pytest.fixture
def make_worker() -> Iterator:
    """Build workers with no backoff sleep; close them all afterwards."""
    workers: list[WikiWorker] = []

    def make(**params: object) -> WikiWorker:
        params.setdefault("http", {"backoff": 0, "retries": 2, "read_timeout": 5})
        workers.append(WikiWorker(**params))
        return workers[-1]

    yield make
    for worker in workers:
        worker.close()


def test_worker_fetches_and_parses_each_kind_of_page(wiki: _WikiServer, make_worker) -> None:
    worker = make_worker()
    assert list(worker.process(f"{wiki.url}/wiki/{BUNDLED}")) == ["BTC", "ETH", "LTC", "XRP", "DOGE", "ADA", "SOL"]
    assert list(worker.process(f"{wiki.url}/wiki/{WIKIPEDIA_CRYPTO}"))[:3] == ["BTC", "LTC", "NMC"]
    sp500 = make_worker(table_id="constituents", limit=3)
    assert list(sp500.process(f"  {wiki.url}/wiki/{SP500}\n")) == ["MMM", "AOS", "AAPL"]
    assert _own(worker.counters) == Counter()


def test_page_without_charset_header_is_decoded_from_its_meta_tag(wiki: _WikiServer, make_worker) -> None:
    # requests would decode this body as ISO-8859-1 and turn the nbsp into "Â".
    body = '<html><head><meta charset="utf-8"></head><body>' + table("<th>Symbol</th>", "<td>\u00a0Ξ\u00a0ETH</td>")
    wiki.script["/wiki/plain"] = [(200, {"Content-Type": "text/html"}, body.encode())]
    assert list(make_worker(ticker=False).process(f"{wiki.url}/wiki/plain")) == ["Ξ ETH"]


def test_500_then_200_is_retried(wiki: _WikiServer, make_worker) -> None:
    wiki.script[f"/wiki/{BUNDLED}"] = [(500, {}, b"oops")]
    assert list(make_worker().process(f"{wiki.url}/wiki/{BUNDLED}"))[0] == "BTC"
    assert wiki.hits[f"/wiki/{BUNDLED}"] == 2


def test_503_with_retry_after_is_retried(wiki: _WikiServer, make_worker) -> None:
    busy = (503, {"Retry-After": "0"}, b"busy")
    wiki.script[f"/wiki/{SP500}"] = [busy, busy]
    assert list(make_worker(table_id="constituents").process(f"{wiki.url}/wiki/{SP500}"))[0] == "MMM"
    assert wiki.hits[f"/wiki/{SP500}"] == 3


def test_503_until_retries_run_out_fails_the_item_with_the_status(wiki: _WikiServer, make_worker) -> None:
    wiki.script[f"/wiki/{BUNDLED}"] = [(503, {}, b"busy")] * 5
    with pytest.raises(requests.HTTPError, match="503"):
        make_worker().process(f"{wiki.url}/wiki/{BUNDLED}")
    assert wiki.hits[f"/wiki/{BUNDLED}"] == 3  # the first try and 2 retries


def test_404_fails_the_item_with_the_status(wiki: _WikiServer, make_worker) -> None:
    worker = make_worker()
    with pytest.raises(requests.HTTPError, match="404"):
        worker.process(f"{wiki.url}/wiki/No_such_page")
    assert wiki.hits["/wiki/No_such_page"] == 1  # a 404 is not retried
    # The worker is still usable for the next item.
    assert list(worker.process(f"{wiki.url}/wiki/{BUNDLED}"))[0] == "BTC"


def test_page_without_the_table_or_column_fails_the_item(wiki: _WikiServer, make_worker) -> None:
    url = f"{wiki.url}/wiki/{BUNDLED}"
    with pytest.raises(LookupError, match=f"no table matching 'table#constituents' on {url}"):
        make_worker(table_id="constituents").process(url)
    with pytest.raises(LookupError, match=f"no column 'Ticker' in table.wikitable on {url}; columns are: Currency"):
        make_worker(column="Ticker").process(url)


def test_column_without_values_is_counted(wiki: _WikiServer, make_worker) -> None:
    body = table("<th>Symbol</th>", "<td></td>").encode()
    wiki.script["/wiki/empty"] = [(200, {"Content-Type": "text/html; charset=utf-8"}, body)]
    worker = make_worker()
    assert list(worker.process(f"{wiki.url}/wiki/empty")) == []
    assert _own(worker.counters) == Counter(no_symbols=1)


@pytest.mark.parametrize("item", [None, "", "   ", 42])
def test_item_that_is_not_a_url_fails(make_worker, item: object) -> None:
    with pytest.raises(ValueError, match="item must be a page URL"):
        make_worker().process(item)  # type: ignore[arg-type]


def test_close_closes_the_http_session(wiki: _WikiServer) -> None:
    worker = WikiWorker(http={"backoff": 0})
    pools = worker._http._pools
    worker.process(f"{wiki.url}/wiki/{BUNDLED}")
    assert pools._pools
    worker.close()
    assert not pools._pools


def test_bundled_mock_server_page(request: pytest.FixtureRequest) -> None:
    """The project's own mock server: its wiki page lists exactly the dataset's symbols."""
    crypto_server = pytest.importorskip("crypto_server")
    if not hasattr(crypto_server, "serve_in_background"):  # only the empty package directory so far
        pytest.skip("crypto_server is not built yet")
    price_server = request.getfixturevalue("price_server")
    worker = WikiWorker(http={"backoff": 0})
    try:
        symbols = list(worker.process(f"{price_server.url}/wiki/List_of_cryptocurrencies"))
    finally:
        worker.close()
    expected = [s.upper() for s in price_server.dataset.symbols]
    assert sorted(symbols) == sorted(set(expected))
    assert len(symbols) == len(expected)


def _own(counters: Mapping[str, float]) -> dict[str, float]:
    """The worker's own counters, without its HTTP client's (``http.*``)."""
    return {k: v for k, v in counters.items() if not k.startswith("http.")}


def test_huge_spans_build_no_grid_wider_than_the_header() -> None:
    # A hostile page: thousands of rows spanning a billion columns. Only the header's columns
    # can hold the one asked for, so the grid stays as wide as the header, in memory as in time.
    spans = '<tr><td colspan="1000000000">x</td></tr>' * 1500
    html = (
        "<table class='wikitable'><tr><th>Name</th><th>Symbol</th><th>Price</th></tr>"
        f"{spans}<tr><td>Bitcoin</td><td>BTC</td><td>1</td></tr>"
        "<tr><td>Ether</td><td colspan='1000000000'>ETH</td></tr></table>"
    )
    tracemalloc.start()
    try:
        values = extract_column(html)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert values == ["BTC", "ETH"]
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB"  # ~3 MiB; 15 with 1,000 columns a row
