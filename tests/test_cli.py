"""The bi-app command line, run in process with click's runner on real databases."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bi_app.cli import main
from data_layer.info import database_info
from tests.support import URL_PASSWORD


@pytest.fixture
def run(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path):  # noqa: ANN001
    monkeypatch.setenv("BI_DATABASE_URL", db_url)
    monkeypatch.setenv("BI_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_demo_data_loads_and_reports_its_rate(run, engine: Engine) -> None:
    result = run("demo-data", "--rows", "3000", "--seed", "5", "--replace")
    assert result.exit_code == 0, result.output
    assert "Loaded 3,000 rows (replace)" in result.output and "rows/s" in result.output
    assert "FAIL" not in result.output
    assert database_info(engine)["tables"]["advanced_sales_data"] == 3000
    appended = run("demo-data", "--rows", "500")
    assert appended.exit_code == 0, appended.output
    assert database_info(engine)["tables"]["advanced_sales_data"] == 3500


def test_train_saves_the_models_of_each_data_version(run, engine: Engine, tmp_path) -> None:  # noqa: ANN001
    import joblib

    from data_layer.meta import data_version

    assert run("demo-data", "--rows", "1500", "--seed", "2", "--replace", "--no-train").exit_code == 0
    assert not list(tmp_path.glob("data/models/*/*.joblib"))
    trained = run("train")
    assert trained.exit_code == 0, trained.output
    assert "segmentation: k=" in trained.output and "churn: ROC AUC" in trained.output
    with engine.connect() as conn:
        first = data_version(conn)
    [saved] = tmp_path.glob("data/models/*/*.joblib")
    assert saved.name == f"models-{first}.joblib" and joblib.load(saved).data_version == first

    reloaded = run("demo-data", "--rows", "1500", "--seed", "3", "--replace")  # trains after the load
    assert "segmentation: k=" in reloaded.output
    with engine.connect() as conn:
        second = data_version(conn)
    assert [p.name for p in tmp_path.glob("data/models/*/*.joblib")] == [f"models-{second}.joblib"]


def test_check_and_info(run, engine: Engine) -> None:
    run("demo-data", "--rows", "200", "--replace")
    checked = run("check")
    assert checked.exit_code == 0 and "rows in" not in checked.output
    assert "200 rows, order dates 2023-" in checked.output
    info = run("info")
    assert info.exit_code == 0
    assert "advanced_sales_data: 200 rows" in info.output
    assert database_info(engine)["data_version"] in info.output


def test_check_fails_on_bad_rows(run, engine: Engine) -> None:
    run("demo-data", "--rows", "50", "--replace")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE advanced_sales_data SET total_amount = total_amount + 1 "
                             "WHERE order_id = 'ORD-00000007'")
    checked = run("check")
    assert checked.exit_code == 1
    assert "FAIL total = subtotal - discount + shipping  (1 rows" in checked.output


def with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def test_info_masks_the_password(postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test server trusts local connections, so any password gets in: enough to show masking.
    monkeypatch.setenv("BI_DATABASE_URL", with_password(postgres_schema_url, URL_PASSWORD))
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert URL_PASSWORD not in result.output
    assert "postgres:***@" in result.output


@pytest.mark.parametrize("command", [["info"], ["check"], ["demo-data", "--rows", "10"]])
def test_unreachable_database_is_one_line_and_exit_1(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BI_DATABASE_URL", f"postgresql://bi:{URL_PASSWORD}@127.0.0.1:1/shop")
    monkeypatch.setenv("BI_CONNECT_TIMEOUT_S", "2")
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "Connection refused" in error_lines[0]
    assert URL_PASSWORD not in result.output


def test_bad_configuration_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BI_DATABASE_URL", "mysql://root@localhost/shop")
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: unsupported database URL scheme 'mysql': use postgresql://... or sqlite:///..."


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_debug_serves_this_machine_only(host: str, tmp_path) -> None:  # noqa: ANN001
    refused = CliRunner().invoke(main, ["serve", "--debug", "--host", host], env={"BI_DATA_DIR": str(tmp_path)})
    assert refused.exit_code == 1
    assert refused.output.strip() == (f"Error: --debug runs Dash's development server, which runs code sent to it: "
                                      f"it serves this machine only (127.0.0.1, localhost, ::1), not {host}")
    assert not (tmp_path / "bi_demo.sqlite").exists()  # refused before anything was made


def test_a_data_folder_that_is_a_file_is_one_line_not_a_traceback(tmp_path) -> None:  # noqa: ANN001
    afile = tmp_path / "afile"
    afile.write_text("")
    answer = CliRunner().invoke(main, ["info"], env={"BI_DATA_DIR": str(afile), "BI_DATABASE_URL": ""})
    assert answer.exit_code == 1 and answer.output.strip() == f"Error: cannot use {afile}: File exists"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_without_sign_in_serve_serves_this_machine_only(host: str, tmp_path) -> None:  # noqa: ANN001
    refused = CliRunner().invoke(main, ["serve", "--host", host],
                                 env={"BI_DATA_DIR": str(tmp_path), "BI_SECRET_KEY": ""})
    assert refused.exit_code == 1
    assert refused.output.strip() == (f"Error: without sign-in (demo mode) the dashboard serves this machine only, not "
                                      f"{host}: set BI_SECRET_KEY to turn sign-in on and add users with bi-app users add")
    assert not (tmp_path / "bi_demo.sqlite").exists()


def test_the_deployments_wsgi_entry_refuses_to_start_without_sign_in(tmp_path) -> None:  # noqa: ANN001
    """gunicorn with the deployment's settings and entry point, as the systemd unit runs it, stops at once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "BI_DATA_DIR": str(tmp_path), "BI_SECRET_KEY": "", "BI_WORKERS": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    config = Path(__file__).resolve().parents[1] / "deploy" / "gunicorn.conf.py"
    started = subprocess.run([sys.executable, "-m", "gunicorn", "--config", str(config), "--bind", "127.0.0.1:0",
                              "bi_app.wsgi:server()"], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode != 0
    assert ("bi_app.config.ConfigError: bi_app.wsgi serves the dashboard to other machines, which needs sign-in: set "
            "BI_SECRET_KEY") in started.stderr, started.stderr[-2000:]


def test_a_short_secret_key_is_refused_with_how_to_make_one(tmp_path) -> None:  # noqa: ANN001
    short_key = secrets.token_hex(8)  # 16 characters, made for this run
    answer = CliRunner().invoke(main, ["info"], env={"BI_DATA_DIR": str(tmp_path), "BI_SECRET_KEY": short_key})
    assert answer.exit_code == 1
    assert "BI_SECRET_KEY must be at least 32 random characters" in answer.output
    assert short_key not in answer.output


def test_a_background_command_ends_when_the_server_that_started_it_does() -> None:
    """`bi-app train` and `snapshot`, started by a server, watch it (``BI_PARENT_PID``) and end with it."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    child = "from bi_app.cli import _end_with_parent; _end_with_parent(); import time; time.sleep(600)"
    parent = ("import os, subprocess, sys; p = subprocess.Popen([sys.executable, '-c', %r], "
              "env={**os.environ, 'BI_PARENT_PID': str(os.getpid())}); print(p.pid, flush=True)" % child)
    started = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True)
    pid = int(started.stdout.strip())

    def running() -> bool:
        status = Path(f"/proc/{pid}/status")
        try:
            return "\nState:\tZ" not in status.read_text()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 120  # an upper bound for a loaded machine, not a timing assertion
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(), "the child outlived its parent"
