"""Run a scraping pipeline described in YAML: ``python main.py [--pipeline PATH]`` (see ``--help``)."""

import sys

from cli.app import main

if __name__ == "__main__":
    sys.exit(main())
