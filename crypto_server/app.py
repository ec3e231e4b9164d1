"""The Flask application: JSON price API, HTML pages and JSON errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, redirect, request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

from . import pages
from .data import Dataset, UnknownName
from .load import load_dataset
from .faults import Faults, Stats, _FaultMiddleware


class CryptoServerApp(Flask):
    """A Flask app that also carries its :class:`Dataset`, request :class:`Stats` and :class:`Faults`.

    ``set_faults(**changes)`` changes fault injection while serving. ``run()`` is
    disabled: serve with ``serve_in_background()`` or ``python -m crypto_server``,
    which never enable the debugger.
    """

    dataset: Dataset
    _fault_layer: _FaultMiddleware

    @property
    def stats(self) -> Stats:
        """Request counters (see :class:`Stats`)."""
        return self._fault_layer.stats

    @property
    def faults(self) -> Faults:
        """The fault settings in force now."""
        return self._fault_layer.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some of ``sleep``, ``jitter``, ``error_rate``, ``rate_limit``; returns the new settings.

        Takes effect for requests that arrive afterwards. ``ValueError`` on a bad value
        (nothing is changed then), ``TypeError`` on an unknown name.
        """
        return self._fault_layer.set_faults(**changes)

    def run(self, *args: Any, **kwargs: Any) -> None:
        # Flask's run() can switch on the Werkzeug debugger, which executes code sent to it.
        raise RuntimeError("use crypto_server.serve_in_background() or python -m crypto_server")


def create_app(
    dataset: Dataset | None = None,
    *,
    sleep: float = 0.0,
    jitter: float = 0.0,
    error_rate: float = 0.0,
    rate_limit: int | None = None,
    seed: int = 0,
    assets: int = 100,
) -> Flask:
    """The price server as a WSGI app (a :class:`CryptoServerApp`).

    ``dataset`` defaults to the synthetic one for ``seed`` and ``assets``. ``seed``
    also seeds the random choices of fault injection (jitter, which requests fail).
    See :class:`Faults` for the other keywords. ``ValueError`` on bad values.
    """
    faults = Faults(sleep=sleep, jitter=jitter, error_rate=error_rate, rate_limit=rate_limit)
    if dataset is None:
        dataset = load_dataset(seed=seed, assets=assets)

    app = CryptoServerApp(__name__)
    app.config["DEBUG"] = False  # FLASK_DEBUG in the environment must not turn it on
    app.json.sort_keys = False  # keep the tutorial server's field order
    app.dataset = dataset
    app._fault_layer = _FaultMiddleware(app.wsgi_app, faults, seed)
    app.wsgi_app = app._fault_layer  # type: ignore[method-assign]

    # The dataset never changes, so the pages are rendered once.
    index_html = pages.render_index(dataset)
    wiki_html = pages.render_wiki(dataset)
    quote_html = {symbol: pages.render_quote(dataset, symbol) for symbol in dataset.symbols}
    # What jsonify writes, without its per-call set-up (a new encoder each time): the price
    # route is the server's hot path. The fixed lists are encoded once.
    encode = json.JSONEncoder(separators=(",", ":")).encode
    exchanges_json = encode(dataset.exchanges)
    symbols_json = encode(dataset.symbols)
    days_json = encode({"first": dataset.days.first.isoformat(), "last": dataset.days.last.isoformat()})

    @app.get("/")
    def index() -> Response:
        return _html(index_html)

    @app.get("/exchanges")
    def exchanges() -> Response:
        return _json(exchanges_json)

    @app.get("/symbols")
    def symbols() -> Response:
        return _json(symbols_json)

    @app.get("/days")
    def day_range() -> Response:
        return _json(days_json)

    @app.get("/price/<exchange>/<symbol>/<date>")
    def price(exchange: str, symbol: str, date: str) -> Response:
        try:
            return _json(encode(dataset.price(exchange, symbol, date)))
        except UnknownName as exc:
            raise NotFound(str(exc)) from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    @app.get("/lookup")
    def lookup() -> Response:
        # Target of the home page form, which cannot build a /price/... path without JavaScript.
        args = [request.args.get(name, "").strip() for name in ("exchange", "symbol", "date")]
        if not all(args):
            raise BadRequest("exchange, symbol and date are required")
        return redirect("/price/" + "/".join(quote(a, safe="") for a in args))

    @app.get("/wiki/List_of_cryptocurrencies")
    def wiki() -> Response:
        return _html(wiki_html)

    @app.get("/quote/<symbol>")
    def quote_page(symbol: str) -> Response:
        try:
            return _html(quote_html[symbol.lower()])
        except KeyError:
            raise NotFound(f"unknown symbol {symbol!r}") from None

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # Also reached for unhandled exceptions, as a 500. get_response() keeps headers such as Allow.
        response = exc.get_response()
        response.set_data(app.json.dumps({"status": exc.code, "error": exc.name, "message": exc.description}))
        response.content_type = "application/json"
        return response

    return app


def _json(text: str) -> Response:
    return Response(text + "\n", mimetype="application/json")


def _html(text: str) -> Response:
    return Response(text, mimetype="text/html")
