"""Run a scraping pipeline described in YAML: ``python main.py [--pipeline PATH]`` (see ``--help``)."""

import os
import signal
import sys
from types import FrameType


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    # Nothing has started while the modules load (about 0.3 s): end at once, in one line, as a
    # Ctrl+C does later, instead of a traceback from whichever module was being imported.
    os.write(2, b"interrupted\n")
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    signal.signal(signal.SIGTERM, _interrupted_while_loading)
    from cli.app import main

    # From here the CLI handles both signals itself (exit 130, the run's own clean-up).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(main())
