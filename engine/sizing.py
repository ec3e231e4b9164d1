"""One warning line when a stage has far more threads than its input can keep busy.

Idle threads are not free: each costs memory and start-up and shutdown time
(see the README). A source stage's need is known before the run starts (its
input values); any other stage's at its end: the most threads that were ever
busy at the same moment.
"""

from __future__ import annotations

from engine.config import StageConfig

_MIN_SPARE = 8  # fewer spare threads than this are not worth a line


def far_above(instances: int, usable: int) -> bool:
    """Whether ``instances`` threads are far above the ``usable`` ones: more than twice as many, and 8 more."""
    return instances > 2 * usable and instances - usable >= _MIN_SPARE


def source_warning(config: StageConfig) -> str | None:
    """The line for a source stage with far more threads than input values (known before the run), or None."""
    values = len(config.input_values)
    if not config.is_source or not far_above(config.instances, values):
        return None
    return (
        f"{config.name}: {config.instances:,} threads, but only {values:,} input value{'s' if values != 1 else ''} "
        f"to share; instances: {max(values, 1):,} would do"
    )


def run_warning(name: str, instances: int, peak_busy: int) -> str | None:
    """The line for a stage whose threads were never more than ``peak_busy`` busy at once, or None.

    None also when the stage never had an item (its input was empty: no sign of too many threads).
    """
    if peak_busy == 0 or not far_above(instances, peak_busy):
        return None
    return (
        f"{name}: {instances:,} threads, but at most {peak_busy:,} were ever busy at once; "
        f"instances: {peak_busy:,} would do"
    )
