"""Files made to cost a server dearly, from the command line and from the Data page: time to a clear answer,
and a worker's memory while it takes a 50 MB upload and reads it.

- a 2 kB XLSX whose sheet declares the full 1,048,576 x 16,384 range;
- an XLSX with three rows of orders and a million empty rows after them;
- a CSV of 10,000 columns (about 2 MB);
- a binary file named .csv (2 MB);
- a 50 MB CSV of 800,000 orders (only its memory is measured: reading it is real work).

CLI: ``bi-app import FILE --dry-run``, whole command. Data page: a `bi-app serve` (one worker), the file
sent to POST /upload as the page's script does, then the page's callback that reads it and answers
(the preview, or why not), as the browser asks for it; from the start of the upload to that answer.

    .venv/bin/python bench/hostile_files.py [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.report import cpu_check, write_section  # noqa: E402
from tests.support import callback_body, served  # noqa: E402
from tests.test_importer import _workbook_with_sheet_xml  # noqa: E402

BI_APP = str(Path(sys.executable).with_name("bi-app"))


def make_files(folder: Path) -> dict[str, Path]:
    bomb = _workbook_with_sheet_xml(folder / "declares-a-huge-sheet.xlsx",
                                    lambda sheet: sheet.replace('ref="A1:D3"', 'ref="A1:XFD1048576"'))
    empty_rows = "".join(f'<row r="{number}"/>' for number in range(4, 1_000_004))
    empty = _workbook_with_sheet_xml(folder / "million-empty-rows.xlsx",
                                     lambda sheet: sheet.replace("</sheetData>", empty_rows + "</sheetData>"))
    wide = folder / "ten-thousand-columns.csv"
    wide.write_text(",".join(f"column{i}" for i in range(10_000)) + "\n" +
                    "\n".join(",".join(str(i * j % 997) for i in range(10_000)) for j in range(40)) + "\n")
    binary = folder / "photo.csv"
    binary.write_bytes(os.urandom(2 * 1024 * 1024))
    return {"a 2 kB XLSX declaring 1,048,576 x 16,384 cells": bomb, "an XLSX of 3 rows and 1,000,000 empty rows": empty,
            "a CSV of 10,000 columns": wide, "a binary file named .csv": binary}


def big_csv(folder: Path) -> Path:
    path = folder / "orders-50mb.csv"
    row = "ORD-{:08d},2024-03-{:02d},A product with a long name of a real shop,{}.99\n"
    with open(path, "w") as out:
        out.write("order_id,order_date,product,amount\n")
        for number in range(800_000):
            out.write(row.format(number, number % 28 + 1, number % 500))
    return path


def cli(path: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([BI_APP, "import", str(path), "--dry-run", "--no-train"], env=env, capture_output=True,
                          text=True, timeout=600)
    seconds = time.perf_counter() - started
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return seconds, lines[-1] if lines else ""


class DataPage:
    """The Data page of a running server, driven over HTTP as its script and the browser drive it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.get(f"{base}/data", headers={"Accept": "text/html"}, timeout=60)
        dependencies = self.session.get(f"{base}/_dash-dependencies", timeout=60).json()
        self.receive = next(d for d in dependencies if "data-upload.data" in d["output"])
        self.check = next(d for d in dependencies if "data-validation.children" in d["output"]
                          and any('"data-map"' in item["id"] for item in d["inputs"]))

    def check_file(self, upload: dict) -> str:
        """The check the page runs once it shows the proposed mapping: the validation summary it shows."""
        mapping = [{"id": {"type": "data-map", "field": field}, "property": "value", "value": column}
                   for field, column in upload["auto"].items()]
        answer = self.session.post(f"{self.base}/_dash-update-component", timeout=600, json=callback_body(
            self.check, {"data-upload.data": upload, "data-map.value": mapping,
                         "data-map.id": [{**item, "property": "id", "value": item["id"]} for item in mapping]}),
            headers={"X-CSRFToken": self.session.cookies.get("_csrf_token", "")})
        found = re.findall(r'"children": "([^"]{20,})"', answer.text)
        return found[0] if found else answer.text[:200]

    def upload(self, path: Path) -> tuple[float, str, requests.Response]:
        headers = {"X-CSRFToken": self.session.cookies.get("_csrf_token", ""), "X-File-Name": path.name,
                   "Content-Type": "application/octet-stream"}
        started = time.perf_counter()
        with open(path, "rb") as body:
            sent = self.session.post(f"{self.base}/upload", data=body, headers=headers, timeout=600)
        answer = self.session.post(f"{self.base}/_dash-update-component", timeout=600,
                                   json=callback_body(self.receive, {"data-uploaded.data": sent.json()}),
                                   headers={"X-CSRFToken": headers["X-CSRFToken"]})
        seconds = time.perf_counter() - started
        return seconds, shown_message(answer.text), answer


def shown_message(text: str) -> str:
    """The message the page shows: the error alert's text, or the file summary line."""
    data = json.loads(text)["response"]
    info = json.dumps(data.get("data-file-info", {}))
    found = re.findall(r'"children": "([^"]{20,})"', info)
    return found[0] if found else info[:200]


def rss_mb(pid: int) -> float:
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
    except OSError:
        return 0.0


def worker_of(master: int) -> int:
    return int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cpu = cpu_check()
    rows = []
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        files = make_files(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BI_")}
        env.update(BI_DATA_DIR=str(folder / "data"), BI_COLUMNAR="0", BI_LOG_LEVEL="WARNING")
        with served(env, folder / "server.log") as base:
            page = DataPage(base)
            for what, path in files.items():
                cli_seconds, cli_message = cli(path, env)
                page_seconds, page_message, _answer = page.upload(path)
                rows.append((what, path.stat().st_size, cli_seconds, cli_message, page_seconds, page_message))
                print(rows[-1], flush=True)
            big = big_csv(folder)
            master = int(subprocess.run(["pgrep", "-f", "--", f"--bind 127.0.0.1:{base.rsplit(':', 1)[1]}"],
                                        capture_output=True, text=True).stdout.split()[0])
            worker = worker_of(master)
            before = rss_mb(worker)
            samples = {"upload": before, "read": before, "check": before}
            phase = {"now": "upload"}
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    samples[phase["now"]] = max(samples[phase["now"]], rss_mb(worker))
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch)
            watcher.start()
            headers = {"X-CSRFToken": page.session.cookies.get("_csrf_token", ""), "X-File-Name": big.name,
                       "Content-Type": "application/octet-stream"}
            with open(big, "rb") as body:
                sent = page.session.post(f"{base}/upload", data=body, headers=headers, timeout=600)
            phase["now"] = "read"
            received = page.session.post(f"{base}/_dash-update-component", timeout=600,
                                         headers={"X-CSRFToken": headers["X-CSRFToken"]},
                                         json=callback_body(page.receive, {"data-uploaded.data": sent.json()}))
            phase["now"] = "check"
            checked = page.check_file(received.json()["response"]["data-upload"]["data"])
            print("check:", checked, flush=True)
            done.set()
            watcher.join()
            memory = (big.stat().st_size / 1048576, before, samples["upload"] - before, samples["read"] - before,
                      samples["check"] - before)
    body = report(rows, memory, cpu)
    print(body)
    if not args.no_write:
        write_section("Hostile files: time to a clear answer, memory while taking 50 MB", "python bench/hostile_files.py",
                      body)


def report(rows: list[tuple], memory: tuple[float, ...], cpu: float) -> str:
    lines = [
        f"CLI: `bi-app import FILE --dry-run --no-train`, whole command. Data page: `bi-app serve` (one worker), the "
        f"file sent to `POST /upload` as the page's script sends it, then the callback that reads it and answers, "
        f"from the start of the upload to that answer. CPU check {cpu:.2f} s.",
        "",
        "| file | size | CLI (s) | CLI's last line | Data page (s) | what the page says |",
        "|---|---|---|---|---|---|",
    ]
    for what, size, cli_seconds, cli_message, page_seconds, page_message in rows:
        lines.append(f"| {what} | {size / 1024:,.0f} kB | {cli_seconds:.1f} | {cli_message[:140]} | "
                     f"{page_seconds:.2f} | {page_message[:140]} |")
    size_mb, before, upload_growth, read_growth, check_growth = memory
    lines += ["", f"A {size_mb:.0f} MB CSV of 800,000 orders through the Data page: the worker ({before:.0f} MB "
                  f"before) grew by at most {upload_growth:.0f} MB while taking the upload (written to disk a "
                  f"megabyte at a time), by at most {read_growth:.0f} MB while reading it for the preview, "
                  f"mapping and reading decisions, and by at most {check_growth:.0f} MB while checking every row "
                  "under that mapping (the page's next request; the rows read are kept for it) (sampled every 10 ms)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
