"""The dashboard: a small web UI over the service's live run, its run history and the stored prices.

``create_app(run_dir=..., store=..., live=...)`` builds the Flask app; :class:`DashboardServer`
serves it from a thread (``start_dashboard`` picks the port as ``python main.py dashboard`` does).
Pages: Now (``/``), Runs (``/runs``, each run's timeline at ``/runs/<name>`` and failed items at
``/runs/<name>/failed``) and Prices (``/prices``). Read-only: it writes nothing.
"""

from dashboard.app import create_app
from dashboard.server import DEFAULT_PORT, DashboardError, DashboardServer, start_dashboard

__all__ = ["DEFAULT_PORT", "DashboardError", "DashboardServer", "create_app", "start_dashboard"]
