"""Fixtures for the crypto_server tests: the default dataset, an app and its Flask test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

import crypto_server

CSV_DIR = Path(__file__).parent / "cryptowatch"


@pytest.fixture(scope="session")
def dataset() -> crypto_server.Dataset:
    return crypto_server.load_dataset(seed=0)


@pytest.fixture
def app(dataset: crypto_server.Dataset) -> crypto_server.CryptoServerApp:
    return crypto_server.create_app(dataset)  # type: ignore[return-value]


@pytest.fixture
def client(app: crypto_server.CryptoServerApp) -> FlaskClient:
    return app.test_client()
