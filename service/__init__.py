"""The price service: runs on a schedule, their history, their timelines, and the run in progress.

Knows nothing of HTTP or the dashboard's pages; the CLI (``cli/serve.py``) wires it up.
"""
