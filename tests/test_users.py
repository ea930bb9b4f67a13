"""Users: stored hashed, roles and regions checked, managed from the command line; SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from bi_app.cli import main
from data_layer.users import (
    ROLES,
    User,
    UserError,
    add_user,
    authenticate,
    find_user,
    list_users,
    remove_user,
    set_password,
    set_regions,
    set_role,
    users,
)

PASSWORD = "correct horse battery"


def test_a_user_signs_in_with_their_password_only(engine: Engine) -> None:
    with engine.begin() as conn:
        added = add_user(conn, "ana", "analyst", PASSWORD, ["North", " East ", "North"])
    assert added == User("ana", "analyst", ("East", "North"))
    with engine.connect() as conn:
        assert authenticate(conn, "ana", PASSWORD) == added
        assert authenticate(conn, "ana", PASSWORD + "!") is None
        assert authenticate(conn, "bob", PASSWORD) is None
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert PASSWORD not in stored and stored.startswith("scrypt:")


def test_no_user_table_means_nobody_signs_in(engine: Engine) -> None:
    with engine.connect() as conn:
        assert authenticate(conn, "ana", PASSWORD) is None
        assert list_users(conn) == [] and find_user(conn, "ana") is None


@pytest.mark.parametrize(("name", "role", "password", "message"), [
    ("ana", "owner", PASSWORD, "role must be one of viewer, analyst, admin"),
    ("ana", "viewer", "short", "at least 8 characters"),
    ("two words", "viewer", PASSWORD, "without spaces"),
    ("", "viewer", PASSWORD, "1 to 64 characters"),
])
def test_bad_users_are_refused_with_the_reason(engine: Engine, name: str, role: str, password: str,
                                                message: str) -> None:
    with engine.begin() as conn, pytest.raises(UserError, match=message):
        add_user(conn, name, role, password)
    with engine.connect() as conn:
        assert list_users(conn) == []


def test_users_are_changed_and_removed(engine: Engine) -> None:
    with engine.begin() as conn:
        add_user(conn, "zoe", "viewer", PASSWORD)
        add_user(conn, "ana", "admin", PASSWORD, ["West"])
        with pytest.raises(UserError, match="exists already"):
            add_user(conn, "ana", "viewer", PASSWORD)
        assert set_role(conn, "zoe", "analyst").role == "analyst"
        assert set_regions(conn, "zoe", ["South"]).regions == ("South",)
        assert set_regions(conn, "ana", []).regions == ()
        set_password(conn, "zoe", "another long one")
    with engine.connect() as conn:
        assert [user.name for user in list_users(conn)] == ["ana", "zoe"]
        assert authenticate(conn, "zoe", PASSWORD) is None
        assert authenticate(conn, "zoe", "another long one") == User("zoe", "analyst", ("South",))
    with engine.begin() as conn:
        remove_user(conn, "zoe")
        with pytest.raises(UserError, match="no user named 'zoe'"):
            remove_user(conn, "zoe")
    with engine.connect() as conn:
        assert [user.name for user in list_users(conn)] == ["ana"]


def test_roles_rank_viewer_analyst_admin() -> None:
    assert ROLES == ("viewer", "analyst", "admin")
    analyst = User("ana", "analyst", ())
    assert analyst.may("viewer") and analyst.may("analyst") and not analyst.may("admin")


def test_users_are_managed_from_the_command_line_and_passwords_never_echoed(db_url: str) -> None:
    env = {"BI_DATABASE_URL": db_url}
    runner = CliRunner()
    added = runner.invoke(main, ["users", "add", "ana", "--role", "analyst", "--region", "North"],
                          input=PASSWORD + "\n", env=env)
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "Added ana (analyst; North)." and PASSWORD not in added.output
    again = runner.invoke(main, ["users", "add", "ana", "--role", "viewer"], input=PASSWORD + "\n", env=env)
    assert again.exit_code == 1 and again.output.strip() == "Error: a user named 'ana' exists already"
    assert runner.invoke(main, ["users", "set-role", "ana", "--role", "admin"], env=env).output.strip() == \
        "Now ana (admin; North)."
    assert runner.invoke(main, ["users", "set-regions", "ana"], env=env).output.strip() == \
        "Now ana (admin; every region)."
    changed = runner.invoke(main, ["users", "set-password", "ana"], input="a new password\n", env=env)
    assert changed.exit_code == 0 and "a new password" not in changed.output
    assert runner.invoke(main, ["users", "list"], env=env).output.strip() == "ana (admin; every region)"
    assert runner.invoke(main, ["users", "remove", "ana"], env=env).exit_code == 0
    assert "No users yet" in runner.invoke(main, ["users", "list"], env=env).output
    missing = runner.invoke(main, ["users", "remove", "ana"], env=env)
    assert missing.exit_code == 1 and missing.output.strip() == "Error: no user named 'ana'"


def test_the_command_line_refuses_before_asking_for_a_password_it_would_not_use(db_url: str) -> None:
    env = {"BI_DATABASE_URL": db_url}
    runner = CliRunner()
    assert runner.invoke(main, ["users", "add", "ana", "--role", "viewer"], input=PASSWORD + "\n", env=env).exit_code == 0
    taken = runner.invoke(main, ["users", "add", "ana", "--role", "viewer"], input="", env=env)
    assert taken.output.strip() == "Error: a user named 'ana' exists already"
    absent = runner.invoke(main, ["users", "set-password", "zed"], input="", env=env)
    assert absent.exit_code == 1 and absent.output.strip() == "Error: no user named 'zed'"
    empty = runner.invoke(main, ["users", "add", "eve", "--role", "viewer"], input="", env=env)
    assert empty.exit_code == 1 and empty.output.strip().startswith("Error: no password given")


def test_a_token_stands_for_its_user_until_revoked_and_is_stored_only_hashed(engine: Engine) -> None:
    from data_layer.users import create_token, list_tokens, revoke_token, tokens, user_for_token

    with engine.begin() as conn:
        add_user(conn, "Nora", "viewer", PASSWORD, ["North"])
        token, secret = create_token(conn, "NORA")
    with engine.connect() as conn:
        user, token_id = user_for_token(conn, secret)
        assert (user, token_id) == (User("nora", "viewer", ("North",)), token.id)
        assert user_for_token(conn, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert user_for_token(conn, "not a token") is None and user_for_token(conn, f"bi_{token.id}_") is None
        stored = conn.execute(select(tokens)).mappings().one()
        assert secret not in str(dict(stored)) and stored["user_name"] == "nora"
        assert list_tokens(conn) == [token] and list_tokens(conn, "nora") == [token]
    with engine.begin() as conn:
        revoke_token(conn, token.id)
        with pytest.raises(UserError, match="was revoked"):
            revoke_token(conn, token.id)
        with pytest.raises(UserError, match="no token"):
            revoke_token(conn, "nothere")
    with engine.connect() as conn:
        assert user_for_token(conn, secret) is None
        assert list_tokens(conn)[0].revoked_at is not None
    with engine.begin() as conn:  # a user's removal takes their tokens
        _other, other_secret = create_token(conn, "nora")
        remove_user(conn, "nora")
    with engine.connect() as conn:
        assert user_for_token(conn, other_secret) is None and list_tokens(conn) == []


def test_a_users_stamp_changes_with_their_password_role_or_regions(engine: Engine) -> None:
    with engine.begin() as conn:
        stamps = [add_user(conn, "ana", "viewer", PASSWORD).stamp]
        set_password(conn, "ana", "another long one")
        stamps.append(find_user(conn, "ana").stamp)
        stamps.append(set_role(conn, "ana", "admin").stamp)
        stamps.append(set_regions(conn, "ana", ["West"]).stamp)
        assert find_user(conn, "ANA ").stamp == stamps[-1]
    assert len(set(stamps)) == 4


def test_the_audit_log_keeps_entries_in_order_and_from_a_time_on(engine: Engine) -> None:
    from datetime import datetime

    from data_layer.audit import AuditEntry, entries, record

    with engine.connect() as conn:
        assert entries(conn) == []
    first = AuditEntry("2026-11-01T10:00:00+00:00", "ana", "login", "/login", "", None, "127.0.0.1")
    second = AuditEntry("2026-11-02T09:30:00+00:00", "ana", "download", "/export/orders.csv", "region=North", 650,
                        "127.0.0.1", "")
    with engine.begin() as conn:
        record(conn, first)
        record(conn, second)
        with pytest.raises(ValueError, match="unknown audit action"):
            record(conn, AuditEntry("2026-11-02T09:30:00+00:00", "ana", "sneeze"))
    with engine.connect() as conn:
        assert entries(conn) == [first, second]
        assert entries(conn, datetime(2026, 11, 2)) == [second]
        assert entries(conn, datetime(2026, 11, 3)) == []
