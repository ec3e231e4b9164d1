"""The pipeline engine: stages of worker threads joined by bounded queues.

It knows nothing about scraping, HTTP or databases; see ``contract`` for what
it asks of a worker.
"""

from engine.contract import ItemsFailed

__all__ = ["ItemsFailed"]
