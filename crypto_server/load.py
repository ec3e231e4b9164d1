"""Choose and build the :class:`Dataset` the server answers from.

The one module that knows both loaders; they depend on :mod:`.data` and never on this.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import synthetic
from .csvload import load_csv_dir
from .data import Dataset, parse_day


def load_dataset(
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    assets: int = 100,
    first_day: str | dt.date | None = None,
    last_day: str | dt.date | None = None,
) -> Dataset:
    """Load Cryptowatch CSV exports from ``data_dir``, or build the synthetic dataset.

    Synthetic data (``data_dir`` None) is a seeded random walk per asset for ``assets``
    assets (the real list first, made-up ones past it) on eleven exchanges, from
    ``first_day`` (default 2019-12-20) to ``last_day`` (default 2020-04-30). The same
    arguments always give the same numbers, and a synthetic dataset is built once per
    process and then shared (it is immutable). ``seed``, ``assets`` and the day range
    are ignored for CSV data. Raises :class:`DataError` for unreadable or malformed
    files and ``ValueError`` for bad arguments.
    """
    if data_dir is not None:
        return load_csv_dir(Path(data_dir))
    first = parse_day(first_day) if first_day is not None else synthetic.FIRST_DAY
    last = parse_day(last_day) if last_day is not None else synthetic.LAST_DAY
    return synthetic.build(int(seed), int(assets), first, last)
