import pytest

from tessera.eval.judge import Judge


@pytest.fixture(scope="session")
def judge() -> Judge:
    """The shipped, versioned judge."""
    return Judge.load()
