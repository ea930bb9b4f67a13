"""Shared by the benchmarks: machine description and writing a section of docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by the scripts in `bench/`; each section says the command, the machine and the date.
The machine is shared and noisy: compare variants as ratios within one run
(`bench/page_compare.py --base REV` does so for the overview page).
"""


def machine() -> str:
    """One line: CPU model, cores, memory, OS, Python, PostgreSQL."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pg = "psql not found"
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {pg}"
    )


def cpu_check() -> float:
    """Seconds for a 10-million-step Python loop (best of 3): how fast this shared machine is right now."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or add) the section ``name`` of docs/BENCHMARKS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- bench:{name} -->\n## {name}\n\n"
        f"- Command: `{command}`\n- Machine: {machine()}\n- Date: {stamp}\n"
        f"- CPU check when written: a 10-million-step Python loop took {cpu_check():.2f} s (compare runs by it)\n"
        f"\n{body.strip()}\n"
        f"<!-- /bench:{name} -->\n"
    )
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}"
    BENCHMARKS.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS.write_text(text)
    print(f"written to {BENCHMARKS.relative_to(BENCHMARKS.parent.parent)} ({name})")


def publish(name: str, command: str, lines: list[str]) -> None:
    """Print ``lines`` and write them as the section ``name`` of docs/BENCHMARKS.md."""
    print("\n".join(lines))
    write_section(name, command, "\n".join(lines) + "\n")
