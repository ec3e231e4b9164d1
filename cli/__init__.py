"""The command line: ``python main.py`` (see ``cli.app``)."""
