"""Wiki symbol scraper: page URL in, one symbol string out per table row.

``extract_column`` does the parsing and needs no network; ``WikiWorker``
fetches a page with :class:`workers.http.HttpClient` and hands it over.

Pipeline params (YAML): ``table_id``, ``table_selector``, ``column``,
``limit`` and ``http`` (keyword arguments for ``HttpClient``), e.g.::

    params: {table_id: constituents, column: Symbol, http: {read_timeout: 5, retries: 3}}
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import soupsieve
from bs4 import BeautifulSoup, NavigableString, Tag

from workers.http import HttpClient

log = logging.getLogger(__name__)

# Footnote markers: <sup> elements (and anything never rendered as text).
_SKIPPED_TAGS = frozenset({"sup", "style", "script"})
# "BTC[3]", "ETH [a][12]": reference markers left as plain text after the value.
_TRAILING_REFS = re.compile(r"(?:\s*\[[^\[\]]*\])+$")
# Invisible characters that str.split() does not treat as whitespace.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200e\u200f\u2060\ufeff"))
# Browsers clamp spans to these; a typo like colspan="10000" must not build a huge row.
_MAX_COLSPAN = 1000
_MAX_ROWSPAN = 65534


def extract_column(
    html: str | bytes,
    *,
    table_id: str | None = None,
    table_selector: str = "table.wikitable",
    column: str = "Symbol",
    limit: int | None = None,
    source: str = "<html>",
) -> list[str]:
    """Return the cleaned, non-empty, distinct values of one column of an HTML table.

    The table is ``<table id=table_id>`` when ``table_id`` is given, else the
    first table matching the CSS ``table_selector``.  The column is the one
    whose header cell text equals ``column``, ignoring case; header rows are
    the leading rows of column headings only (no ``<td>``, no ``<th scope=row>``)
    and ``colspan``/``rowspan`` are expanded in every row so indices line up.  Values are stripped of
    whitespace (``&nbsp;`` included), ``<sup>`` footnotes and trailing
    ``[3]``-style markers; rows where the cell is empty or missing are
    skipped; each value is returned once, in page order, at most ``limit``.

    ``source`` (the page URL) only appears in error messages.  Raises
    ``LookupError`` when the table or the column is not there, ``ValueError``
    for bad arguments.
    """
    _check_params(table_id=table_id, table_selector=table_selector, column=column, limit=limit)
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
    grid = _expand_spans(rows)
    n_header = _count_header_rows(rows)
    index = _column_index(grid[:n_header], column)
    if index is None:
        labels = ", ".join(_header_labels(rows[:n_header])) or "(none)"
        raise LookupError(f"no column {column!r} in {where} on {source}; columns are: {labels}")

    values: list[str] = []
    seen: set[str] = set()
    for tr, line in zip(rows[n_header:], grid[n_header:]):
        if not _is_data_row(tr) or index >= len(line) or line[index] is None:
            continue
        value = _clean(_text(line[index]))
        if value and value not in seen:
            seen.add(value)
            values.append(value)
            if limit is not None and len(values) >= limit:
                break
    return values


class WikiWorker:
    """Pipeline worker: ``process(url)`` returns the symbols of the table on that page.

    Params are those of :func:`extract_column` plus ``http``, a dict of keyword
    arguments for :class:`HttpClient`.  A failed fetch (after the client's
    retries), a missing table or a missing column raises, failing that item.
    ``counters["no_symbols"]`` counts pages whose column had no values.
    """

    def __init__(
        self,
        table_id: str | None = None,
        table_selector: str = "table.wikitable",
        column: str = "Symbol",
        limit: int | None = None,
        http: dict[str, Any] | None = None,
    ) -> None:
        _check_params(table_id=table_id, table_selector=table_selector, column=column, limit=limit)
        if http is not None and not isinstance(http, dict):
            raise ValueError(f"http must be a mapping of HttpClient arguments, got {http!r}")
        self.table_id = table_id
        self.table_selector = table_selector
        self.column = column
        self.limit = limit
        self.counters: Counter[str] = Counter()
        try:
            self._http = HttpClient(**(http or {}))
        except TypeError as exc:  # an unknown or positional key in the YAML
            raise ValueError(f"bad http params {http!r}: {exc}") from None

    def process(self, item: str) -> list[str]:
        """Fetch the page at URL ``item`` and return its symbols (a list, so failures are all-or-nothing)."""
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"item must be a page URL, got {item!r}")
        url = item.strip()
        response = self._http.get(url)
        # Without a charset in Content-Type requests assumes ISO-8859-1; bytes let
        # BeautifulSoup use the page's <meta charset> instead.
        content_type = response.headers.get("Content-Type", "").lower()
        html = response.text if "charset=" in content_type else response.content
        symbols = extract_column(
            html,
            table_id=self.table_id,
            table_selector=self.table_selector,
            column=self.column,
            limit=self.limit,
            source=url,
        )
        if symbols:
            log.info("%d symbols from %s", len(symbols), url)
        else:
            self.counters["no_symbols"] += 1
            log.warning("column %r on %s has no values", self.column, url)
        return symbols

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()


def _check_params(*, table_id: Any, table_selector: Any, column: Any, limit: Any) -> None:
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


def _expand_spans(rows: list[Tag]) -> list[list[Tag | None]]:
    """One list of cells per row, a cell repeated in every grid slot its colspan/rowspan covers."""
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
            colspan = _span(cell, "colspan", _MAX_COLSPAN)
            rowspan = _span(cell, "rowspan", _MAX_ROWSPAN)
            for c in range(col, col + colspan):
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
            if cell is not None and _clean(_text(cell)).casefold() == wanted:
                return index
    return None


def _header_labels(rows: Iterable[Tag]) -> list[str]:
    labels: list[str] = []
    for tr in rows:
        for cell in tr.find_all(["td", "th"], recursive=False):
            label = _clean(_text(cell))
            if label and label not in labels:
                labels.append(label)
    return labels


def _text(element: Tag) -> str:
    """Text of ``element`` without footnotes, comments or scripts; <br> counts as a space."""
    parts: list[str] = []
    for child in element.children:
        if isinstance(child, Tag):
            if child.name == "br":
                parts.append(" ")
            elif child.name not in _SKIPPED_TAGS:
                parts.append(_text(child))
        elif type(child) is NavigableString:  # Comment, CData, Doctype... are subclasses
            parts.append(str(child))
    return "".join(parts)


def _clean(text: str) -> str:
    """Collapse whitespace (nbsp included), drop invisible characters and trailing [n] markers."""
    text = " ".join(text.translate(_INVISIBLE).split())
    return _TRAILING_REFS.sub("", text).strip()
