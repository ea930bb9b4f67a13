"""The documentation says what the code does: settings, import options, measures and statuses."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from bi_app.cli import main
from bi_app.config import SETTINGS_HELP
from data_layer.importer import FIELDS, STATUSES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MEASURES = (ROOT / "docs" / "MEASURES.md").read_text()


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end)]


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [name for name in SETTINGS_HELP if f"`{name}`" not in README and f"`{name}`," not in README]
    assert missing == []


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
