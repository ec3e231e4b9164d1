"""A local mock crypto price server for demos, tests and benchmarks.

Its JSON API is that of the PyCon 2020 concurrency tutorial's price server, so the
tutorial's client code works unchanged; its HTML pages are shaped like the real sites
scrapers target; and it can be made slow and faulty on demand.

HTTP API (every error is a JSON object ``{"status", "error", "message"}``):

- ``GET /exchanges``: sorted list of exchange names.
- ``GET /symbols``: sorted list of lower-case symbols.
- ``GET /days``: ``{"first": "2019-12-20", "last": "2020-04-30"}``, the range of the data.
- ``GET /price/<exchange>/<symbol>/<YYYY-MM-DD>``: ``{"exchange", "symbol", "open", "high",
  "low", "close", "volume", "day"}``, or ``null`` (200) when that pair has no price that
  day. The symbol is case-insensitive. 404 for an unknown exchange or symbol, 400 for a
  malformed date.
- ``GET /wiki/List_of_cryptocurrencies``: a Wikipedia-like page. The first
  ``table.wikitable`` lists every symbol of ``/symbols`` (upper case) in its ``Symbol``
  column. Expect what real pages have: row headers (``<th scope="row">``) before the
  ``<td>`` cells, footnote ``<sup class="reference">`` inside some symbol cells,
  ``&nbsp;`` and stray whitespace, nested links and spans, and a second, unrelated
  wikitable (defunct coins) after it.
- ``GET /quote/<symbol>``: a finance-site quote page. The price is in
  ``//fin-streamer[@data-symbol="BTC"][@data-field="regularMarketPrice"]``: exact in the
  ``value`` attribute, with thousands separators in the text. The page header shows other
  assets' prices in ``fin-streamer`` elements too, so select by ``data-symbol``.
  ``Dataset.quote()`` gives the expected values.
- ``GET /``: the endpoints and a price lookup form, which submits to ``GET /lookup`` (a
  redirect to ``/price/...``). Anything else: 404.

Python API::

    handle = crypto_server.serve_in_background(port=0, sleep=0.5, seed=1)
    requests.get(f"{handle.url}/exchanges")
    handle.set_faults(error_rate=0.2)   # while serving; affects later requests
    handle.stats.peak_in_flight         # counters: requests, in_flight, peak_in_flight,
                                        # errors_injected, rate_limited; stats.reset()
    handle.stop()                       # or use the handle as a context manager

    with crypto_server.start_server_process(sleep=0.5) as server:   # in a child process
        requests.get(f"{server.url}/exchanges")
        server.stats()                  # the same counters, plus cpu_seconds of the child

A server in a child process does not compete with its clients for the GIL; it stops
when stopped, and also when its parent process ends in any way (see ``process.py``).

Two WSGI servers serve the same app, with the same answers and faults. The child
process and the command line use gevent's (``server="gevent"``, the default where
gevent is installed): a greenlet per connection, keep-alive, latency slept
cooperatively, so thousands of slow requests are held at once for little CPU; it
monkey patches nothing. ``serve_in_background()`` uses werkzeug's threaded server
by default (a thread per connection, each connection closed after one answer),
which needs nothing beyond Flask; ``serve_in_background(server="gevent")`` is there
too. Either closes a connection idle for 60 s and listens with a backlog of 4096.

``create_app()`` returns the Flask app alone (it has the same ``dataset``, ``stats``,
``faults`` and ``set_faults()``), for the Flask test client. ``load_dataset()`` builds
the :class:`Dataset` the server answers from; ``Dataset.price()`` returns exactly what
``/price`` answers, so expected results can be computed without HTTP.

Fault injection (:class:`Faults`, also the command-line flags): ``sleep`` seconds of
latency per request plus up to ``jitter`` more, ``error_rate`` fraction answered
500/503, ``rate_limit`` requests per second server-wide beyond which the answer is 429
with ``Retry-After``. ``seed`` makes the random choices repeatable. Latency is spent
holding no lock: 200 requests at ``sleep=1`` take about one second together.

Command line: ``python -m crypto_server --port 5000 --sleep 0.5`` (``-h`` for all flags).

Import from the package; its submodules are internal.
"""

from .app import CryptoServerApp, create_app
from .data import Asset, DataError, Dataset, DayRange, UnknownName
from .load import load_dataset
from .faults import Faults, Stats
from .process import ServerProcess, ServerProcessError, start_server_process
from .server import ServerHandle, serve_in_background

__all__ = [
    "Asset",
    "CryptoServerApp",
    "DataError",
    "Dataset",
    "DayRange",
    "Faults",
    "ServerHandle",
    "ServerProcess",
    "ServerProcessError",
    "Stats",
    "UnknownName",
    "create_app",
    "load_dataset",
    "serve_in_background",
    "start_server_process",
]
