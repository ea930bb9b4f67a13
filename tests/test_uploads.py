"""Data-page uploads on disk: written a chunk at a time, refused whole or not at all, and removed after a day
even when no new upload comes. (Through the real server and nginx: tests/test_access.py, test_deployment.py.)"""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bi_app.context import CONFIG_KEY
from bi_app.importing import (
    KEEP_UPLOADS,
    MAX_UPLOAD_BYTES,
    UPLOAD_CHUNK_BYTES,
    UploadError,
    receive_upload,
    start_cleaner,
)


class CountingStream(io.BytesIO):
    """A request body that remembers the largest piece read from it."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.largest = max(self.largest, len(piece))
        return piece


@pytest.fixture
def data_dir(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: ANN001
    config = app.server.config[CONFIG_KEY]
    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace(config, data_dir=tmp_path))
    with app.server.app_context():
        yield tmp_path


def test_an_upload_is_written_a_chunk_at_a_time(data_dir: Path) -> None:
    content = os.urandom(3 * UPLOAD_CHUNK_BYTES + 123)
    stream = CountingStream(content)
    upload = receive_upload(stream, len(content), "../My Orders (2024).csv")
    assert upload.path.read_bytes() == content
    assert upload.file == "My_Orders__2024_.csv" and upload.path.parent.parent == data_dir / "uploads"
    assert stream.largest == UPLOAD_CHUNK_BYTES, "never more than a chunk in memory"


def test_a_file_past_the_limit_is_refused_before_a_byte_is_read(data_dir: Path) -> None:
    stream = CountingStream(b"x" * 10)
    with pytest.raises(UploadError, match="the most a file may be is 200 MB"):
        receive_upload(stream, MAX_UPLOAD_BYTES + 1, "big.csv")
    assert stream.largest == 0 and not (data_dir / "uploads").exists()


def test_a_file_that_does_not_arrive_whole_leaves_nothing(data_dir: Path) -> None:
    with pytest.raises(UploadError, match=r"did not arrive whole \(1,000 of 5,000 bytes\)"):
        receive_upload(io.BytesIO(b"x" * 1000), 5000, "cut.csv")
    assert list((data_dir / "uploads").iterdir()) == []


def test_old_uploads_are_removed_on_a_schedule_without_a_new_upload(data_dir: Path) -> None:
    old = receive_upload(io.BytesIO(b"a,b\n"), 4, "old.csv")
    recent = receive_upload(io.BytesIO(b"a,b\n"), 4, "recent.csv")
    long_ago = time.time() - KEEP_UPLOADS.total_seconds() - 60
    os.utime(old.path, (long_ago, long_ago))
    stop = start_cleaner(data_dir / "uploads", every=KEEP_UPLOADS / 100_000)
    try:
        deadline = time.monotonic() + 60
        while old.path.parent.exists():
            assert time.monotonic() < deadline, "the old upload was never removed"
            time.sleep(0.05)
    finally:
        stop.set()
    assert recent.path.read_bytes() == b"a,b\n"
