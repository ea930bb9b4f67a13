"""The documentation says what the code does: settings, import options, measures and statuses."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from bi_app.cli import main
from bi_app.config import SETTINGS, Config
from data_layer.importer import FIELDS, STATUSES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MEASURES = (ROOT / "docs" / "MEASURES.md").read_text()


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end)]


def settings_table() -> str:
    """The README's configuration table as the settings table makes it."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        default = setting.shown_default
        rows.append(f"| `{setting.env}` | {default if default == 'unset' else f'`{default}`'} | {setting.help} |")
    return "\n".join(rows) + "\n"


def test_the_readme_configuration_table_is_the_settings_table() -> None:
    """Edit bi_app/config.py's SETTINGS, then paste this test's expected table into the README."""
    section = _between(README, "## Configuration", "## Using PostgreSQL")
    assert settings_table() in section, "\n" + settings_table()


def test_every_setting_is_a_config_field_read_from_its_variable() -> None:
    fields = set(Config.__dataclass_fields__) - {"embedded"}
    assert sorted(setting.field for setting in SETTINGS) == sorted(fields)
    assert Config.from_env({}).demo_rows == 2000  # the README's default
    assert Config.from_env({"BI_DEMO_ROWS": "17"}).demo_rows == 17


def test_bi_app_info_shows_every_setting(tmp_path: Path) -> None:
    shown = CliRunner().invoke(main, ["info"], env={"BI_DATA_DIR": str(tmp_path), "BI_DATABASE_URL": "",
                                                    "BI_LOCALE": "de_DE"}).output
    assert [s.env for s in SETTINGS if s.env not in shown] == []
    assert "BI_LOCALE                de_DE\n" in shown and "BI_DEMO_ROWS             2000 (default)" in shown


def test_the_readme_and_docs_give_one_measures_table() -> None:
    table = _between(MEASURES, "<!-- measures-table -->", "<!-- /measures-table -->")
    assert table in README
    for measure in ("Gross sales", "Returns and refunds", "Net revenue", "Orders", "Average order value"):
        assert f"| {measure}" in table


def test_every_status_of_the_vocabulary_is_documented() -> None:
    listed = {word.strip() for line in MEASURES.splitlines() if line.startswith("| ") and " | " in line
              for word in line.split(" | ")[1].split(",")}
    missing = [status for status in STATUSES if status and status.replace("_", " ") not in listed]
    assert missing == []


def test_every_import_option_and_field_is_documented() -> None:
    help_text = CliRunner().invoke(main, ["import", "--help"]).output
    options = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help", "--no-train"}
    section = _between(README, "## Importing your own orders", "## JSON API")
    assert sorted(option for option in options if option not in section) == []
    assert [field for field in FIELDS if f"`{field}`" not in section] == []


def _documented(route: str, text: str) -> bool:
    """``route`` written in ``text``, a ``<parameter>`` of it under any name (``<name>`` as ``<table>``)."""
    pattern = "<[a-z_]+>".join(re.escape(part) for part in re.split(r"<[a-z_]+>", route))
    return re.search(pattern, text) is not None


def test_every_api_and_export_route_is_documented(app) -> None:  # noqa: ANN001 - the app fixture
    docs = README + (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    routes = sorted({rule.rule for rule in app.server.url_map.iter_rules() if rule.rule.startswith(("/api/", "/export/"))})
    assert "/export/orders.csv" in routes and "/export/<name>.csv" in routes
    assert [route for route in routes if not _documented(route, docs)] == []


def test_every_command_and_page_is_in_the_readme(app) -> None:  # noqa: ANN001 - the app registers the pages
    import dash

    assert [name for name in main.commands if f"`bi-app {name}" not in README] == []
    pages = [page["path"] for page in dash.page_registry.values()]
    assert "/strategy" in pages
    assert [path for path in pages if f"(`{path}`)" not in README] == []


def test_every_module_is_in_the_architecture_table() -> None:
    """A module of bi_app/ or data_layer/ that docs/ARCHITECTURE.md does not name is drift."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    modules = [path for folder in ("bi_app", "data_layer") for path in sorted((ROOT / folder).glob("*.py"))
               if path.name != "__init__.py"]
    assert len(modules) > 20
    assert [f"{path.parent.name}/{path.name}" for path in modules if path.name not in text] == []


def test_every_route_of_the_app_is_documented(app) -> None:  # noqa: ANN001 - the app fixture
    docs = README + (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    ours = sorted({rule.rule for rule in app.server.url_map.iter_rules() if not rule.rule.startswith(("/_", "/static/"))
                   and rule.rule not in ("/", "/<path:path>", "/assets/<path:filename>")})
    assert {"/login", "/logout", "/healthz"} <= set(ours)
    assert [route for route in ours if not _documented(route, docs)] == []
