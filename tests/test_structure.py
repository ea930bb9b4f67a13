"""The code's shape: no import circle, each module importable alone, no SQL outside the data layer, one
cache-key rule, thin callbacks."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bi_app", "data_layer", "pages")


def our_modules() -> dict[str, Path]:
    """Every module of our packages, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``path`` imports anywhere (in functions too: a late import is still an
    edge), except under ``if TYPE_CHECKING:``, which never runs."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                connect(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return circles


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_a_late_import_counts_and_a_type_checking_one_does_not(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n"
                      "def f():\n    from y import thing\n")
    assert imports_of(source, {"x": source, "y": source, "y.thing": source}) == {"y", "y.thing"}


def test_no_module_imports_itself_back_through_others() -> None:
    modules = our_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    assert import_circles(graph) == []


@pytest.mark.slow
def test_every_module_imports_alone() -> None:
    """Each module in a fresh interpreter: none relies on another having been imported first (a page
    registers itself with Dash, which wants an app first: a bare one, not ours; the deployments' WSGI
    entry wants sign-in configured)."""
    env = {**os.environ, "BI_SECRET_KEY": SECRET_KEY}

    def import_alone(module: str) -> tuple[str, int, list[str]]:
        before = "import dash; dash.Dash(__name__, use_pages=False, pages_folder=''); " \
            if module.startswith("pages.") else ""
        done = subprocess.run([sys.executable, "-c", f"{before}import {module}"], cwd=ROOT, capture_output=True,
                              text=True, env=env)
        return module, done.returncode, done.stderr.strip().splitlines()[-1:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [(module, error) for module, code, error in pool.map(import_alone, our_modules()) if code]
    assert failures == []


#: SQL run or built outside the data layer: ``conn.execute(``, ``select(`` (also a source's
#: ``.select(``) or ``text(``; ``span_text(`` and the like are not.
SQL_CALL = re.compile(r"(?<![\w])(execute|select|text)\(|\.(execute|select)\(")


def test_no_sql_outside_the_data_layer() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for package in ("bi_app", "pages") for path in sorted((ROOT / package).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if SQL_CALL.search(line.split("#")[0])]
    assert found == []


def test_the_sql_pattern_finds_sql_and_only_sql() -> None:
    for line in ("conn.execute(query)", "select(sales.c.order_id)", "source.select(filters)", "text('SELECT 1')"):
        assert SQL_CALL.search(line), line
    for line in ("span_text(start, end)", "path.read_text()", "csv_text(value)", "selected(x)"):
        assert not SQL_CALL.search(line), line


def test_every_filter_field_changes_the_cache_key_unless_said_not_to() -> None:
    """One cache-key rule: a field added to the filters (a user's scope, say) is in every key."""
    from dataclasses import fields, replace
    from datetime import date

    from data_layer.filters import NOT_IN_ANSWERS, Filters

    base = Filters()
    changed = {"start": date(2024, 1, 1), "end": date(2024, 1, 31), "period": "last-30-days", "compare": "last-year"}
    for field in fields(Filters):
        other = replace(base, **{field.name: changed.get(field.name, ("x",))})
        assert (other.cache_key() == base.cache_key()) == (field.name in NOT_IN_ANSWERS), field.name


def test_callbacks_are_thin() -> None:
    """A callback reads its inputs and hands them to a plain function: at most 15 lines of body
    (its docstring aside), unless a ``# long because ...`` comment on its ``def`` line says why."""
    long = []
    for path in sorted([*(ROOT / "pages").glob("*.py"), ROOT / "bi_app" / "shell.py"]):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef) or not any(
                    isinstance(d, ast.Call) and getattr(d.func, "id", None) == "callback" for d in node.decorator_list):
                continue
            body = node.body[1:] if ast.get_docstring(node) else node.body
            length = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            if length > 15 and "# long because" not in lines[node.lineno - 1]:
                long.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


#: Where the data layer may call ``execute`` itself: ``run`` (every read goes through it) and the
#: writes and batch copies (loads, summary rebuilds, metadata writes, snapshot builds).
DIRECT_EXECUTE = {
    "engine.run", "engine.ping", "engine._sqlite_on_connect", "meta.write_meta", "summaries.fill_summary",
    "summaries._fill_daily", "loader._add_line_numbers", "loader._load_lines", "loader._merge_staged",
    "loader._store_summary", "columnar.ColumnarReplica._store_precomputed", "columnar.build_snapshot",
    "columnar._export_orders", "columnar.LoadSummary._copy", "columnar.LoadSummary._start",
    "queries.read_frame",  # DuckDB's own columnar result, timed and logged as run does
    "users.add_user", "users.remove_user", "users.set_role", "users.set_regions", "users.set_password",
    "users.create_token", "users.revoke_token", "users.start_session", "users.end_session", "users.end_sessions",
    "audit.record", "users.set_email",
    # The report tables' writes and the scheduler lock's (a session lock, not a read).
    "reports.add_subscription", "reports.add_alert", "reports.remove", "reports.claim", "reports.move_on",
    "reports.record_check", "reports.finish", "reports.take_retry", "reports.note_look", "reports.note_sent",
    "reports._advisory_lock", "reports._advisory_lock.take",
}


def test_every_read_of_the_data_layer_goes_through_run() -> None:
    found = []
    for path in sorted((ROOT / "data_layer").glob("*.py")):
        def visit(node: ast.AST, where: str) -> None:
            for child in ast.iter_child_nodes(node):
                calls = isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                if calls and child.func.attr == "execute":
                    found.append(where)
                named = isinstance(child, (ast.FunctionDef, ast.ClassDef))
                visit(child, f"{where}.{child.name}" if named else where)

        visit(ast.parse(path.read_text()), path.stem)
    assert sorted(set(found) - DIRECT_EXECUTE) == []
