"""Evaluation loops report progress while the user waits."""
import logging

from common.engine.progress import logged_progress


def test_logged_progress_yields_everything_and_logs_each_tenth(caplog):
    with caplog.at_level(logging.INFO, logger="common.engine.progress"):
        out = list(logged_progress(list(range(20)), "validation"))
    assert out == list(range(20))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("validation")]
    assert len(lines) == 10 and lines[-1].startswith("validation 20/20 batches")


def test_logged_progress_without_length(caplog):
    with caplog.at_level(logging.INFO, logger="common.engine.progress"):
        assert list(logged_progress(iter([1, 2]), "test")) == [1, 2]
    assert "test 1/? batches" in caplog.text
