"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory):
    """A fresh ``$STRUM_CACHE`` for one test module: each design is built once per run,
    never taken from an earlier run's cache."""
    root = tmp_path_factory.mktemp("strum-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STRUM_CACHE", str(root))
        yield root
