"""Helpers shared by tests (fixtures live in conftest.py)."""

import os

#: In CI every test that needs a real service must run, never skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
