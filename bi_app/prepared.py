"""Downloads too large to write while the browser waits, prepared in the background (the orders workbook of
a large filter): the first request starts the work and is told to come back; the file is kept under
``BI_DATA_DIR/exports/<key>/`` for a day (removed with the old uploads), so every worker and every later
request for the same data version and filters serves it from disk.

One build per file whatever the number of workers: a ``building`` marker made with ``O_EXCL`` holds the
building process's id; a marker whose process is gone (a worker restarted) is taken over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from bi_app.busy import work_slot
from bi_app.context import current_config
from bi_app.incidents import reference_for

log = logging.getLogger(__name__)

EXPORTS_FOLDER = "exports"


@dataclass(frozen=True)
class PreparedFile:
    """A download prepared in the background: its folder, its file name and what is known of it."""

    folder: Path
    filename: str

    @classmethod
    def of(cls, filename: str, *parts: object) -> PreparedFile:
        """The prepared ``filename`` of ``parts`` (the data version, the filters with the user's scope)."""
        key = hashlib.sha256("\x1f".join(map(str, (filename, *parts))).encode()).hexdigest()[:32]
        return cls(current_config().data_dir / EXPORTS_FOLDER / key, filename)

    @property
    def path(self) -> Path:
        return self.folder / self.filename

    def rows(self) -> int | None:
        """The rows of the finished file; None while it is not finished."""
        try:
            return int(json.loads((self.folder / "done.json").read_text())["rows"])
        except (OSError, ValueError, KeyError):
            return None

    def failure(self) -> str | None:
        """The reference of the last build's failure (its description is in the log), if it failed."""
        try:
            return (self.folder / "failed").read_text() or "unknown"
        except OSError:
            return None

    def building(self) -> bool:
        """True while a live process builds the file."""
        try:
            pid = int((self.folder / "building").read_text())
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def start(self, build: Callable[[Path], int]) -> None:
        """Build the file in a thread of this process (holding a slot of heavy work: :class:`BusyError` at once
        when none is free) unless a live process is building it already. ``build(path)`` writes the file and
        returns its rows; it runs in the app's context, not the request's."""
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / "building"
        if marker.exists() and not self.building():
            marker.unlink(missing_ok=True)  # its process is gone: take over
        slot = work_slot("downloads")
        slot.__enter__()
        try:
            descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        except FileExistsError:  # another request or worker just started it
            slot.__exit__(None, None, None)
            return
        with os.fdopen(descriptor, "w") as out:
            out.write(str(os.getpid()))
        (self.folder / "failed").unlink(missing_ok=True)
        app = current_app._get_current_object()  # type: ignore[attr-defined]

        def run() -> None:
            partial = self.path.with_name(self.filename + ".part")
            try:
                with app.app_context():
                    rows = build(partial)
                partial.rename(self.path)
                (self.folder / "done.json").write_text(json.dumps({"rows": rows}))
            except Exception as exc:  # noqa: BLE001 - the waiting page says it failed, with the reference
                (self.folder / "failed").write_text(reference_for(log, f"Preparing {self.filename} failed", exc,
                                                                  traceback=True))
                partial.unlink(missing_ok=True)
            finally:
                marker.unlink(missing_ok=True)
                slot.__exit__(None, None, None)

        threading.Thread(target=run, name=f"prepare-{self.folder.name}", daemon=True).start()
