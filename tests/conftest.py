"""Shared pytest fixtures."""
import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_logging():
    """Jobs attach handlers to the root logger; drop them after each test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_convmae", False):
            root.removeHandler(handler)
            handler.close()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A benchmark's ``main(["--threads", N])`` sets torch's thread count for the whole process;
    later tests that compare weights bit for bit with a run in another process need the default."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
