import pytest

from stilts_mlflow.world import World


@pytest.fixture(scope="session")
def world() -> World:
    return World(0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STILTS_CACHE", str(tmp_path / "cache"))
