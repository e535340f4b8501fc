"""pytest plugins (registered from tests/conftest.py via `pytest_plugins`)."""
