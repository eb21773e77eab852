"""Root pytest configuration, shared by tests/ and the doctests in docs/."""

import pytest


@pytest.fixture(autouse=True)
def _isolate_sklearn_config():
    """Whatever a test or doctest sets with sklearn.set_config is undone afterwards."""
    import sklearn

    with sklearn.config_context():
        yield
