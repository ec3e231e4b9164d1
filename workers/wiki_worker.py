"""Wiki symbol scraper: page URL in, one symbol string out per table row.

``read_column`` (and its shorthand ``extract_column``) does the parsing and
needs no network; ``WikiWorker`` fetches a page with
:class:`workers.http.HttpClient` and hands it over.

Pipeline params (YAML): ``table_id``, ``table_selector``, ``column``,
``limit``, ``ticker`` and ``http`` (keyword arguments for ``HttpClient``), e.g.::

    params: {table_id: constituents, column: Symbol, http: {read_timeout: 5, retries: 3}}

Real pages are not tidy, so a row whose cell cannot be read fails alone (see
:class:`FailedRow`) and the page's other rows still count.
"""

from __future__ import annotations

import logging
import re
import reprlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import soupsieve
from bs4 import BeautifulSoup, NavigableString, Tag

from engine.contract import ItemsFailed
from workers.http import HttpClient
from workers.validation import MAX_NAME_LENGTH

log = logging.getLogger(__name__)

# Footnote markers: <sup> elements (and anything never rendered as text).
_SKIPPED_TAGS = frozenset({"sup", "style", "script"})
# A cell holds a person's few words; past these it is garbage or hostile, and reading it
# further would cost time (and, for nesting, the interpreter's recursion) for nothing.
MAX_CELL_CHARS = 10_000
MAX_CELL_DEPTH = 100
_MAX_LABELS_SHOWN = 300  # characters of header labels an error message lists
# What separates the codes of one symbol cell: "BTC, XBT, ₿", "BTC / XBT", "XBT (BTC)".
_TOKEN_SEPARATORS = re.compile(r"[\s,;/|()\[\]{}]+")
# A ticker: capitals and digits, maybe joined by . or - (BRK.B, BF-B, 1INCH), maybe after a
# short lower-case prefix (stETH, wBTC).  "Bitcoin" is a name, "₿" a sign: neither is a ticker.
_TICKER = re.compile(r"[a-z]{0,2}[A-Z0-9]+(?:[.-][A-Z0-9]+)*")
# Invisible characters that str.split() does not treat as whitespace.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200e\u200f\u2060\ufeff"))
# Browsers clamp spans to these; a typo like colspan="10000" must not build a huge row.
_MAX_COLSPAN = 1000
_MAX_ROWSPAN = 65534


class CellError(ValueError):
    """One table cell that cannot be read: nested too deep, too long, or (for tickers) holding none."""


@dataclass(frozen=True)
class FailedRow:
    """A table row whose cell could not be read, as the dead-letter file keeps it.

    ``row`` counts every ``<tr>`` of the table from 1, header rows included;
    ``cell`` is the cell's whole HTML (left out of ``repr``, so logs stay short).
    """

    page: str
    row: int
    column: str
    cell: str = field(repr=False)


@dataclass
class Column:
    """What :func:`read_column` found: the values, and the rows that failed with why."""

    values: list[str]
    failures: list[tuple[FailedRow, CellError]]


def extract_column(html: str | bytes, **options: Any) -> list[str]:
    """The values :func:`read_column` finds (rows that fail are left out); same arguments."""
    return read_column(html, **options).values


def read_column(
    html: str | bytes,
    *,
    table_id: str | None = None,
    table_selector: str = "table.wikitable",
    column: str = "Symbol",
    limit: int | None = None,
    ticker: bool = False,
    source: str = "<html>",
) -> Column:
    """Read the cleaned, non-empty, distinct values of one column of an HTML table.

    The table is ``<table id=table_id>`` when ``table_id`` is given, else the
    first table matching the CSS ``table_selector``.  The column is the one
    whose header cell text equals ``column``, ignoring case; header rows are
    the leading rows of column headings only (no ``<td>``, no ``<th scope=row>``)
    and ``colspan``/``rowspan`` are expanded in every row so indices line up.  Values are stripped of
    whitespace (``&nbsp;`` included), ``<sup>`` footnotes and trailing
    ``[3]``-style markers; rows where the cell is empty or missing are
    skipped, and so are section rows ("Stablecoins", "Defunct": one cell
    spans several columns and the row's other cells, if any, are empty).  Each value is returned once, in page
    order, at most ``limit``.

    With ``ticker``, a value is the cell's primary ticker: the first token
    (split at spaces and ``, ; / | ( ) [ ] { }``) that looks like one, i.e.
    capitals and digits maybe joined by ``.`` or ``-`` and after at most two
    lower-case letters, at most ``MAX_NAME_LENGTH`` characters: "BTC, XBT, ₿"
    and "BTC / XBT" give ``BTC``, "XBT (BTC)" gives ``XBT``, "Bitcoin (BTC)"
    gives ``BTC``.  A cell of signs only ("—", "₿") counts as empty.

    A row fails alone (it is in ``failures``, and is not a value) when its cell
    is nested more than ``MAX_CELL_DEPTH`` tags deep, holds more than
    ``MAX_CELL_CHARS`` characters of text, or, with ``ticker``, has words but
    no ticker.  ``source`` (the page URL) appears in messages and failed rows.
    Raises ``LookupError`` when the table or the column is not there,
    ``ValueError`` for bad arguments.
    """
    _check_params(table_id=table_id, table_selector=table_selector, column=column, limit=limit, ticker=ticker)
    soup = BeautifulSoup(html, "lxml")

    if table_id is not None:
        where = f"table#{table_id}"
        table = soup.find("table", id=table_id)
    else:
        where = table_selector
        table = next((t for t in soup.select(table_selector) if t.name == "table"), None)
    if table is None:
        raise LookupError(f"no table matching {where!r} on {source}")

    rows = [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]
    n_header = _count_header_rows(rows)
    grid = _expand_spans(rows, _header_width(rows[:n_header]))
    index = _column_index(grid[:n_header], column)
    if index is None:
        labels = ", ".join(_header_labels(rows[:n_header])) or "(none)"
        labels = labels if len(labels) <= _MAX_LABELS_SHOWN else labels[:_MAX_LABELS_SHOWN] + "..."
        raise LookupError(f"no column {column!r} in {where} on {source}; columns are: {labels}")

    values: list[str] = []
    failures: list[tuple[FailedRow, CellError]] = []
    seen: set[str] = set()
    for number, (tr, line) in enumerate(zip(rows[n_header:], grid[n_header:]), start=n_header + 1):
        if not _is_data_row(tr) or _is_section_row(tr) or index >= len(line) or line[index] is None:
            continue
        cell = line[index]
        try:
            value = _clean(_text(cell))
            if ticker:
                value = _ticker(value)
        except CellError as exc:
            failed = FailedRow(page=source, row=number, column=column, cell=str(cell))
            failures.append((failed, CellError(f"row {number} of {where} on {source}: {exc}")))
            continue
        if value and value not in seen:
            seen.add(value)
            values.append(value)
            if limit is not None and len(values) >= limit:
                break
    return Column(values, failures)


class WikiWorker:
    """Pipeline worker: ``process(url)`` returns the symbols of the table on that page.

    Params are those of :func:`read_column` plus ``http``, a dict of keyword
    arguments for :class:`HttpClient`; ``ticker`` is on by default here, since
    the symbols go to a price server.  A failed fetch (after the client's
    retries), a missing table or a missing column raises, failing that item.
    Rows whose cell cannot be read fail alone: the page's symbols still go
    on, and each such row is a failed item of its own (a :class:`FailedRow`,
    raised through :class:`engine.ItemsFailed`).  ``counters["no_symbols"]``
    counts pages whose column had no values.
    """

    def __init__(
        self,
        table_id: str | None = None,
        table_selector: str = "table.wikitable",
        column: str = "Symbol",
        limit: int | None = None,
        ticker: bool = True,
        http: dict[str, Any] | None = None,
    ) -> None:
        _check_params(table_id=table_id, table_selector=table_selector, column=column, limit=limit, ticker=ticker)
        if http is not None and not isinstance(http, Mapping):
            raise ValueError(f"http must be a mapping of HttpClient arguments, got {reprlib.repr(http)}")
        self.table_id = table_id
        self.table_selector = table_selector
        self.column = column
        self.limit = limit
        self.ticker = ticker
        try:
            self._http = HttpClient(**(http or {}))
        except TypeError as exc:  # an unknown or positional key in the YAML
            raise ValueError(f"bad http params {reprlib.repr(http)}: {exc}") from None
        self.counters: Counter[str] = self._http.counters  # one Counter: the HTTP stats go with ours

    @classmethod
    def prepare_stage(cls, params: Mapping[str, Any]) -> None:
        """Before the run: check the parameters, with the constructor's own checks."""
        cls(**params).close()

    @classmethod
    def check_replay(cls, item: Any) -> None:
        """On a replay, take page URLs again; a failed row (a dict) is read again only by replaying its page."""
        if not isinstance(item, str):
            raise ValueError("a failed table row is read again only by replaying its page")

    def process(self, item: str) -> list[str]:
        """Fetch the page at URL ``item`` and return its symbols; raise ``ItemsFailed`` if rows failed."""
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"item must be a page URL, got {reprlib.repr(item)}")
        url = item.strip()
        response = self._http.get(url)
        # Without a charset in Content-Type requests assumes ISO-8859-1; bytes let
        # BeautifulSoup use the page's <meta charset> instead.
        content_type = response.headers.get("Content-Type", "").lower()
        html = response.text if "charset=" in content_type else response.content
        found = read_column(
            html,
            table_id=self.table_id,
            table_selector=self.table_selector,
            column=self.column,
            limit=self.limit,
            ticker=self.ticker,
            source=url,
        )
        symbols = found.values
        if found.failures:
            raise ItemsFailed(found.failures, outputs=symbols)
        if symbols:
            log.info("%d symbols from %s", len(symbols), url)
        else:
            self.counters["no_symbols"] += 1
            log.warning("column %r on %s has no values", self.column, url)
        return symbols

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()


def _check_params(*, table_id: Any, table_selector: Any, column: Any, limit: Any, ticker: Any) -> None:
    """Raise ``ValueError`` (one line) unless these are usable :func:`read_column` arguments."""
    if table_id is not None and (not isinstance(table_id, str) or not table_id.strip()):
        raise ValueError(f"table_id must be a non-empty string or None, got {table_id!r}")
    if not isinstance(table_selector, str) or not table_selector.strip():
        raise ValueError(f"table_selector must be a non-empty CSS selector, got {table_selector!r}")
    try:
        soupsieve.compile(table_selector)
    except soupsieve.SelectorSyntaxError as exc:
        raise ValueError(f"table_selector {table_selector!r} is not a valid CSS selector: {exc}") from None
    if not isinstance(column, str) or not _clean(column):
        raise ValueError(f"column must be a non-empty string, got {column!r}")
    # bool is an int subclass; `limit: yes` in YAML is a mistake, not 1.
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if not isinstance(ticker, bool):
        raise ValueError(f"ticker must be true or false, got {ticker!r}")


def _header_width(header: list[Tag]) -> int:
    """How many columns the header rows define: the widest, spans counted (each capped)."""
    widths = [sum(_span(cell, "colspan", _MAX_COLSPAN) for cell in tr.find_all(["td", "th"], recursive=False))
              for tr in header]
    return min(max(widths, default=1), _MAX_COLSPAN)


def _expand_spans(rows: list[Tag], width: int) -> list[list[Tag | None]]:
    """One list of cells per row, a cell repeated in every grid slot its colspan/rowspan covers.

    Only the first ``width`` columns are kept: no column past the header's can be the one asked
    for, and a hostile page's spans (colspan 1000 on 200,000 rows) must not build a grid of millions.
    """
    grid: list[list[Tag | None]] = []
    carried: dict[int, tuple[Tag, int]] = {}  # column -> (cell from a row above, rows it still covers)
    for tr in rows:
        line: dict[int, Tag] = {}
        for col, (cell, left) in list(carried.items()):
            line[col] = cell
            if left > 1:
                carried[col] = (cell, left - 1)
            else:
                del carried[col]
        col = 0
        for cell in tr.find_all(["td", "th"], recursive=False):
            while col in line:
                col += 1
            if col >= width:
                break
            colspan = _span(cell, "colspan", _MAX_COLSPAN)
            rowspan = _span(cell, "rowspan", _MAX_ROWSPAN)
            for c in range(col, min(col + colspan, width)):
                line[c] = cell
                if rowspan > 1:
                    carried[c] = (cell, rowspan - 1)
            col += colspan
        grid.append([line.get(c) for c in range(max(line, default=-1) + 1)])
    return grid


def _span(cell: Tag, attr: str, cap: int) -> int:
    # Browsers read leading digits ("2;" -> 2) and treat 0 or junk as 1.
    match = re.match(r"\s*(\d+)", str(cell.get(attr) or ""))
    return min(max(int(match.group(1)), 1), cap) if match else 1


def _is_data_row(tr: Tag) -> bool:
    """A row with a <td> or a <th scope="row"> row header; all-<th> rows are (sub)headers."""
    return any(c.name == "td" or c.get("scope") == "row" for c in tr.find_all(["td", "th"], recursive=False))


def _count_header_rows(rows: list[Tag]) -> int:
    count = 0
    for tr in rows:
        if _is_data_row(tr) or not tr.find_all(["td", "th"], recursive=False):
            break
        count += 1
    # Some tables put their headings in <td>s: take the first row then.
    return count or min(1, len(rows))


def _column_index(header: list[list[Tag | None]], column: str) -> int | None:
    """Grid index of the first header cell whose text is ``column``, ignoring case."""
    wanted = _clean(column).casefold()
    for line in header:
        for index, cell in enumerate(line):
            if cell is not None and _label(cell).casefold() == wanted:
                return index
    return None


def _header_labels(rows: Iterable[Tag]) -> list[str]:
    labels: list[str] = []
    for tr in rows:
        for cell in tr.find_all(["td", "th"], recursive=False):
            label = _label(cell)
            if label and label not in labels:
                labels.append(label)
    return labels


def _label(cell: Tag) -> str:
    """A header cell's text; "" for one that cannot be read (it names no column)."""
    try:
        return _clean(_text(cell))
    except CellError:
        return ""


def _text(element: Tag) -> str:
    """Text of ``element`` without footnotes, comments or scripts; <br> counts as a space.

    Walks the tree with a stack of its own, so no nesting can exhaust Python's
    recursion; raises :class:`CellError` past ``MAX_CELL_DEPTH`` or ``MAX_CELL_CHARS``.
    """
    parts: list[str] = []
    size = 0
    stack = [iter(element.children)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif isinstance(child, Tag):
            if child.name == "br":
                parts.append(" ")
            elif child.name not in _SKIPPED_TAGS:
                if len(stack) >= MAX_CELL_DEPTH:
                    raise CellError(f"cell nested more than {MAX_CELL_DEPTH} tags deep")
                stack.append(iter(child.children))
        elif type(child) is NavigableString:  # Comment, CData, Doctype... are subclasses
            size += len(child)
            if size > MAX_CELL_CHARS:
                raise CellError(f"cell text is over {MAX_CELL_CHARS:,} characters")
            parts.append(str(child))
    return "".join(parts)


def _clean(text: str) -> str:
    """Collapse whitespace (nbsp included), drop invisible characters and trailing [n] markers."""
    text = " ".join(text.translate(_INVISIBLE).split())
    # "BTC[3]", "ETH [a][12]": reference markers left as plain text after the value.
    # Peeled one at a time from the end: linear, where a regex anchored at $ is quadratic.
    while text.endswith("]"):
        start = text.rfind("[")
        if start < 0 or "]" in text[start + 1 : -1]:
            break
        text = text[:start].rstrip()
    return text


def _ticker(text: str) -> str:
    """The first token of a cleaned cell that looks like a ticker (see :func:`read_column`)."""
    tokens = [token for token in _TOKEN_SEPARATORS.split(text) if token]
    for token in tokens:
        if len(token) <= MAX_NAME_LENGTH and _TICKER.fullmatch(token):
            return token
    if any(char.isalnum() for char in text):
        raise CellError(f"no ticker in {reprlib.repr(text)}")
    return ""  # signs only ("—", "₿"): as good as empty


def _is_section_row(tr: Tag) -> bool:
    """A heading row ("Stablecoins"), not a record: one cell spans several columns, any others are empty."""
    cells = tr.find_all(["td", "th"], recursive=False)
    wide = [cell for cell in cells if _span(cell, "colspan", _MAX_COLSPAN) > 1]
    return len(wide) == 1 and all(cell is wide[0] or not cell.get_text(strip=True) for cell in cells)
