"""HTML pages shaped like the real sites scrapers are written for (Wikipedia, a finance site).

The noise is deliberate: a scraper that survives these pages survives the real ones.
Everything is inline (no external CSS or JS) so the pages work offline.
"""

from __future__ import annotations

from html import escape

from .data import Dataset

_STYLE = """
body{font-family:sans-serif;margin:0 auto;max-width:60em;padding:0 1em;color:#202122}
table.wikitable{border-collapse:collapse;background:#f8f9fa;margin:1em 0}
.wikitable th,.wikitable td{border:1px solid #a2a9b1;padding:.2em .4em}
.wikitable th{background:#eaecf0}
sup.reference{font-size:80%}
.ambox{border:1px solid #a2a9b1;border-left:10px solid #f28500;margin:0 10%}
code{background:#f8f9fa;padding:0 .2em}
""".strip()


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _format_price(value: float) -> str:
    """Price as a finance site shows it: thousands separators, 2 decimals (6 below one dollar)."""
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:,.6f}"


def _decimals(value: float) -> int:
    return 2 if abs(value) >= 1 else 6


# -- index ---------------------------------------------------------------------------------------


def render_index(dataset: Dataset) -> str:
    """The home page: what the server serves, and a price lookup form that needs no JavaScript."""
    exchange, symbol = dataset.exchanges[0], dataset.symbols[0]
    first, last = dataset.days.first.isoformat(), dataset.days.last.isoformat()
    example = f"/price/{exchange}/{symbol}/{last}"
    exchange_options = "".join(f'<option value="{_e(x)}">{_e(x)}</option>' for x in dataset.exchanges)
    symbol_options = "".join(f'<option value="{_e(s)}">{_e(s.upper())}</option>' for s in dataset.symbols)
    endpoints = [
        ("/exchanges", "JSON list of exchange names, sorted"),
        ("/symbols", "JSON list of symbols, lower case, sorted"),
        ("/days", "JSON object with the first and last day of data"),
        (example, "JSON daily open/high/low/close/volume, or null when there is no price that day"),
        ("/wiki/List_of_cryptocurrencies", "HTML list of the assets, built like a Wikipedia list page"),
        (f"/quote/{symbol.upper()}", "HTML quote page, built like a finance site's"),
    ]
    rows = "\n".join(
        f'<li><a href="{_e(path)}"><code>{_e(path)}</code></a>: {_e(text)}</li>' for path, text in endpoints
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Crypto price server</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Crypto price server</h1>
<p>{_e(len(dataset.symbols))} assets on {_e(len(dataset.exchanges))} exchanges, daily from {first} to {last}
({_e(dataset.source)}).</p>
<h2>Endpoints</h2>
<ul>
{rows}
</ul>
<h2>Look up a price</h2>
<form action="/lookup" method="get">
<label>Exchange <select name="exchange">{exchange_options}</select></label>
<label>Symbol <select name="symbol">{symbol_options}</select></label>
<label>Day <input type="date" name="date" value="{last}" min="{first}" max="{last}" required></label>
<button type="submit">Get price</button>
</form>
</body>
</html>
"""


# -- Wikipedia list page -------------------------------------------------------------------------

_SYMBOL_CELLS = (
    "<td>{s}\n</td>",
    '<td><span class="nowrap">{s}</span>{ref}\n</td>',
    '<td data-sort-value="{s}">&nbsp;{s}</td>',
    '<td><a href="/quote/{s}" title="{name} price">{s}</a> </td>',
    '<td>\n<span class="monospaced"><span>{s}</span></span>&nbsp;{ref}\n</td>',
    '<td style="text-align:center;"> {s} </td>',
)
_REFERENCED = (1, 4)  # the cell shapes above that carry a footnote

_DEFUNCT = (
    ("BitConnect", "BCC", "2016–2018", "Ponzi scheme; lending platform shut down"),
    ("Paycoin", "XPY", "2014–2015", "Promised price floor collapsed"),
    ("Coinye", "KOI", "2014", "Abandoned after a trademark lawsuit"),
)


def render_wiki(dataset: Dataset) -> str:
    """A "List of cryptocurrencies" page: the first ``table.wikitable`` lists the dataset's assets."""
    assets = sorted((dataset.asset(s) for s in dataset.symbols), key=lambda a: (a.founded or 9999, a.name.lower()))
    notes: list[str] = []
    rows = []
    for i, asset in enumerate(assets):
        shape = i % len(_SYMBOL_CELLS)
        ref = ""
        if shape in _REFERENCED:
            notes.append(f"{asset.name} ({asset.symbol}) listing data, retrieved {dataset.days.last:%d %B %Y}.")
            n = len(notes)
            ref = f'<sup id="cite_ref-{n}" class="reference"><a href="#cite_note-{n}">&#91;{n}&#93;</a></sup>'
        symbol_cell = _SYMBOL_CELLS[shape].format(s=_e(asset.symbol), name=_e(asset.name), ref=ref)
        quote = dataset.quote(asset.symbol)
        if quote:
            price_cell = (
                f'<td data-sort-value="{quote["price"]!r}" style="text-align:right">'
                f'<a href="/quote/{_e(asset.symbol)}">${_format_price(quote["price"])}</a></td>'
            )
        else:
            price_cell = '<td data-sort-value="0" style="text-align:right">—</td>'
        founded = (
            f'<td data-sort-value="{asset.founded}">{asset.founded}</td>'
            if asset.founded
            else '<td data-sort-value="9999"><span class="unknown">?</span></td>'
        )
        page = _e(asset.name.replace(" ", "_"))
        rows.append(
            "<tr>\n"
            f'<th scope="row"><a href="/wiki/{page}" title="{_e(asset.name)}">{_e(asset.name)}</a></th>\n'
            f"{symbol_cell}\n{founded}\n{price_cell}\n<td>{_e(asset.note)}</td>\n"
            "</tr>"
        )
    defunct = "\n".join(
        f'<tr>\n<th scope="row">{_e(name)}</th>\n<td>{sym}</td>\n<td>{years}</td>\n<td>{_e(why)}</td>\n</tr>'
        for name, sym, years, why in _DEFUNCT
    )
    references = "\n".join(
        f'<li id="cite_note-{n}"><span class="mw-cite-backlink"><b><a href="#cite_ref-{n}">^</a></b></span> '
        f'<span class="reference-text">{_e(text)}</span></li>'
        for n, text in enumerate(notes, start=1)
    )
    return f"""<!DOCTYPE html>
<html class="client-nojs" lang="en" dir="ltr">
<head>
<meta charset="UTF-8">
<title>List of cryptocurrencies - Wikipedia</title>
<style>{_STYLE}</style>
</head>
<body class="mediawiki ltr sitedir-ltr skin-vector page-List_of_cryptocurrencies">
<div id="mw-page-base" class="noprint"></div>
<div id="content" class="mw-body" role="main">
<a id="top"></a>
<h1 id="firstHeading" class="firstHeading" lang="en">List of cryptocurrencies</h1>
<div id="bodyContent" class="mw-body-content">
<div id="siteSub" class="noprint">From Wikipedia, the free encyclopedia</div>
<div id="mw-content-text" lang="en" dir="ltr" class="mw-content-ltr"><div class="mw-parser-output">
<div role="note" class="hatnote navigation-not-searchable">For a broader coverage of this topic, see
<a href="/wiki/Cryptocurrency" title="Cryptocurrency">Cryptocurrency</a>.</div>
<table class="box-More_citations_needed plainlinks metadata ambox ambox-content" role="presentation"><tbody><tr>
<td class="mbox-text"><div class="mbox-text-span">This article <b>needs additional citations for
<a href="/wiki/Wikipedia:Verifiability" title="Wikipedia:Verifiability">verification</a></b>.</div></td>
</tr></tbody></table>
<p>Since the creation of <a href="/wiki/Bitcoin" title="Bitcoin">bitcoin</a> in 2009, the number of new
<a href="/wiki/Cryptocurrency" title="Cryptocurrency">cryptocurrencies</a> has expanded rapidly.
This list covers the {len(assets)}&nbsp;assets traded on the exchanges of this server.</p>
<div id="toc" class="toc" role="navigation"><div class="toctitle"><h2 id="mw-toc-heading">Contents</h2></div>
<ul>
<li class="toclevel-1"><a href="#Cryptocurrencies"><span class="tocnumber">1</span> <span class="toctext">Cryptocurrencies</span></a></li>
<li class="toclevel-1"><a href="#Defunct_cryptocurrencies"><span class="tocnumber">2</span> <span class="toctext">Defunct cryptocurrencies</span></a></li>
<li class="toclevel-1"><a href="#References"><span class="tocnumber">3</span> <span class="toctext">References</span></a></li>
</ul></div>
<h2><span class="mw-headline" id="Cryptocurrencies">Cryptocurrencies</span></h2>
<table class="wikitable sortable" id="cryptocurrencies" style="text-align:left">
<tbody><tr>
<th scope="col">Currency</th>
<th scope="col">Symbol
</th>
<th scope="col" data-sort-type="number">Founded</th>
<th scope="col" data-sort-type="number">Price (USD)<sup id="cite_ref-price" class="reference"><a href="#cite_note-price">&#91;a&#93;</a></sup></th>
<th scope="col" class="unsortable">Notes</th>
</tr>
{chr(10).join(rows)}
</tbody></table>
<h2><span class="mw-headline" id="Defunct_cryptocurrencies">Defunct cryptocurrencies</span></h2>
<table class="wikitable sortable" id="defunct">
<tbody><tr>
<th scope="col">Currency</th>
<th scope="col">Symbol</th>
<th scope="col">Active</th>
<th scope="col">Fate</th>
</tr>
{defunct}
</tbody></table>
<h2><span class="mw-headline" id="References">References</span></h2>
<div class="reflist"><ol class="references">
<li id="cite_note-price"><span class="mw-cite-backlink"><b><a href="#cite_ref-price">^</a></b></span>
<span class="reference-text">Mean closing price over the exchanges on {dataset.days.last:%d %B %Y}.</span></li>
{references}
</ol></div>
</div></div>
</div>
</div>
<div id="footer" role="contentinfo"><p>Text is available under the Creative Commons Attribution-ShareAlike License.</p></div>
</body>
</html>
"""


# -- finance quote page --------------------------------------------------------------------------

_SUMMARY_SIZE = 3  # quotes of other assets in the page header, as finance sites show


def render_quote(dataset: Dataset, symbol: str) -> str:
    """A quote page; the price is ``//fin-streamer[@data-symbol=SYM][@data-field="regularMarketPrice"]/@value``.

    Raises ``UnknownName`` for an unknown symbol. The header also shows other assets'
    prices in ``fin-streamer`` elements, as real finance pages do, so select by ``data-symbol``.
    """
    asset = dataset.asset(symbol)
    quote = dataset.quote(symbol)
    sym = _e(asset.symbol)
    summary = []
    for other in (s for s in dataset.symbols if s != symbol.lower()):
        if len(summary) == _SUMMARY_SIZE:
            break
        q = dataset.quote(other)
        if q:
            summary.append(
                f'<li><a href="/quote/{_e(q["symbol"])}">{_e(q["symbol"])}</a> '
                f'<fin-streamer data-symbol="{_e(q["symbol"])}" data-field="regularMarketPrice" '
                f'data-pricehint="{_decimals(q["price"])}" value="{q["price"]!r}">'
                f"{_format_price(q['price'])}</fin-streamer></li>"
            )
    if quote is None:
        body = '<div id="quote-header-info"><p class="C($negativeColor)">No price data for this symbol.</p></div>'
    else:
        price, change, pct = quote["price"], quote["change"], quote["change_percent"]
        hint = _decimals(price)
        color = "C($positiveColor)" if change >= 0 else "C($negativeColor)"
        sign = "+" if change >= 0 else "-"
        body = f"""<div id="quote-header-info" data-test="quote-header">
<div class="D(ib) Mt(-5px) Maw(38%)--tab768 Maw(38%) Mend(10px) Ov(h) smartphone_Maw(85%) smartphone_Mend(0px)">
<h1 class="D(ib) Fz(18px)">{_e(asset.name)} USD ({sym}-USD)</h1>
</div>
<div class="C($tertiaryColor) Fz(12px)"><span>CCC - CoinMarketCap. Currency in USD</span></div>
<div class="D(ib) Mend(20px)">
<fin-streamer class="Fw(b) Fz(36px) Mb(-4px) D(ib)" data-symbol="{sym}" data-test="qsp-price" data-field="regularMarketPrice" data-trend="none" data-pricehint="{hint}" value="{price!r}" active="">{_format_price(price)}</fin-streamer>
<fin-streamer class="Fw(500) Pstart(8px) Fz(24px)" data-symbol="{sym}" data-test="qsp-price-change" data-field="regularMarketChange" data-trend="txt" data-pricehint="{hint}" value="{change!r}" active=""><span class="{color}">{sign}{_format_price(abs(change))}</span></fin-streamer>
<fin-streamer class="Fw(500) Pstart(8px) Fz(24px)" data-symbol="{sym}" data-field="regularMarketChangePercent" data-trend="txt" data-pricehint="2" value="{pct!r}" active=""><span class="{color}">({sign}{abs(pct):.2f}%)</span></fin-streamer>
<div id="quote-market-notice" class="C($tertiaryColor) D(b) Fz(12px) Fw(n) Mstart(0)--mobpsm Mt(6px)--mobpsm"><span>As of {quote["day"]} 23:59 UTC. Market open.</span></div>
</div>
</div>
<div id="quote-summary" data-test="quote-summary-stats">
<table class="W(100%)"><tbody>
<tr class="Bxz(bb) Bdbw(1px) Bdbs(s) Bdc($seperatorColor) H(36px)"><td class="C($primaryColor) W(51%)"><span>Open</span></td><td class="Ta(end) Fw(600) Lh(14px)" data-test="OPEN-value">{_format_price(quote["open"])}</td></tr>
<tr class="Bxz(bb) Bdbw(1px) Bdbs(s) Bdc($seperatorColor) H(36px)"><td class="C($primaryColor) W(51%)"><span>Day&#x27;s Range</span></td><td class="Ta(end) Fw(600) Lh(14px)" data-test="DAYS_RANGE-value">{_format_price(quote["low"])} - {_format_price(quote["high"])}</td></tr>
<tr class="Bxz(bb) Bdbw(1px) Bdbs(s) Bdc($seperatorColor) H(36px)"><td class="C($primaryColor) W(51%)"><span>Volume</span></td><td class="Ta(end) Fw(600) Lh(14px)" data-test="TD_VOLUME-value">{quote["volume"]:,.0f}</td></tr>
<tr class="Bxz(bb) Bdbw(1px) Bdbs(s) Bdc($seperatorColor) H(36px)"><td class="C($primaryColor) W(51%)"><span>Exchanges</span></td><td class="Ta(end) Fw(600) Lh(14px)">{quote["exchanges"]}</td></tr>
</tbody></table>
</div>"""
    return f"""<!DOCTYPE html>
<html id="atomic" class="NoJs" lang="en-US">
<head>
<meta charset="utf-8">
<title>{_e(asset.name)} USD ({sym}-USD) Price, Value, News &amp; History</title>
<style>{_STYLE}</style>
</head>
<body>
<div id="app">
<header id="header" role="banner">
<div id="market-summary" aria-label="Market summary"><ul>
{chr(10).join(summary)}
</ul></div>
</header>
<main id="quote-page" role="main">
{body}
</main>
</div>
</body>
</html>
"""
