"""Fixtures shared across the suite live in tests/fixtures/, one module per real service."""

pytest_plugins = [
    "tests.fixtures.price_server",
    "tests.fixtures.database",
]
