"""Users: stored hashed, roles and regions checked, managed from the command line; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from bi_app.cli import main
from tests.support import NEW_PASSWORD, SECRET_KEY, USER_PASSWORD
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

PASSWORD = USER_PASSWORD


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
        set_password(conn, "zoe", NEW_PASSWORD)
    with engine.connect() as conn:
        assert [user.name for user in list_users(conn)] == ["ana", "zoe"]
        assert authenticate(conn, "zoe", PASSWORD) is None
        assert authenticate(conn, "zoe", NEW_PASSWORD) == User("zoe", "analyst", ("South",))
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
    env = {"BI_DATABASE_URL": db_url, "BI_SECRET_KEY": SECRET_KEY}
    runner = CliRunner()
    added = runner.invoke(main, ["users", "add", "ana", "--role", "analyst", "--region", "North"],
                          input=PASSWORD + "\n", env=env)
    assert added.exit_code == 0, added.output
    assert added.output.strip().splitlines() == [  # no orders stored yet
        "Added ana (analyst; North).", "Warning: no stored order is in 'North': until one is, ana sees no figures there."]
    assert PASSWORD not in added.output
    again = runner.invoke(main, ["users", "add", "ana", "--role", "viewer"], input=PASSWORD + "\n", env=env)
    assert again.exit_code == 1 and again.output.strip() == "Error: a user named 'ana' exists already"
    assert runner.invoke(main, ["users", "set-role", "ana", "--role", "admin"], env=env).output.strip() == \
        "Now ana (admin; North)."
    assert runner.invoke(main, ["users", "set-regions", "ana"], env=env).output.strip() == \
        "Now ana (admin; every region)."
    changed = runner.invoke(main, ["users", "set-password", "ana"], input=NEW_PASSWORD + "\n", env=env)
    assert changed.exit_code == 0 and NEW_PASSWORD not in changed.output
    assert runner.invoke(main, ["users", "list"], env=env).output.strip() == "ana (admin; every region)"
    assert runner.invoke(main, ["users", "remove", "ana"], env=env).exit_code == 0
    assert "No users yet" in runner.invoke(main, ["users", "list"], env=env).output
    missing = runner.invoke(main, ["users", "remove", "ana"], env=env)
    assert missing.exit_code == 1 and missing.output.strip() == "Error: no user named 'ana'"


def test_adding_a_user_warns_of_a_region_not_in_the_data_and_of_sign_in_being_off(db_url: str) -> None:
    from data_layer.bootstrap import load_demo_data
    from data_layer.engine import make_engine

    engine = make_engine(db_url)
    load_demo_data(engine, rows=300, seed=3, replace=True)
    engine.dispose()
    env = {"BI_DATABASE_URL": db_url, "BI_SECRET_KEY": ""}
    added = CliRunner().invoke(main, ["users", "add", "ana", "--role", "viewer", "--region", "north", "--region",
                                      "East", "--region", "Atlantis"], input=PASSWORD + "\n", env=env)
    assert added.exit_code == 0
    assert added.output.strip().splitlines() == [
        "Added ana (viewer; Atlantis, East, north).",
        "Warning: no stored order is in 'Atlantis'; 'north' (did you mean 'North'?): until one is, ana sees no figures "
        "there.",
        "Sign-in is off until BI_SECRET_KEY is set (see the README's access control section)."]


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


def test_a_session_lasts_until_signed_out_or_the_password_changes_and_reads_the_user_as_they_are_now(
        engine: Engine) -> None:
    from data_layer.users import end_session, session_user, sessions, start_session

    with engine.begin() as conn:
        ana = add_user(conn, "Ana", "viewer", PASSWORD)
        first, second = start_session(conn, ana), start_session(conn, ana)
        set_role(conn, "ana", "admin")
        set_regions(conn, "ana", ["West"])
    with engine.connect() as conn:
        assert session_user(conn, first) == User("ana", "admin", ("West",))  # the role and regions of now
        assert session_user(conn, "a made-up id") is None
        stored = conn.execute(select(sessions)).mappings().all()
        assert len(stored) == 2 and first not in str([dict(row) for row in stored])  # kept only hashed
    with engine.begin() as conn:
        end_session(conn, first)
    with engine.connect() as conn:
        assert session_user(conn, first) is None and session_user(conn, second) is not None
    with engine.begin() as conn:
        set_password(conn, "ana", NEW_PASSWORD)
        third = start_session(conn, find_user(conn, "ana"))
    with engine.connect() as conn:
        assert session_user(conn, second) is None and session_user(conn, third) is not None
    with engine.begin() as conn:
        remove_user(conn, "ana")
    with engine.connect() as conn:
        assert session_user(conn, third) is None


def test_a_session_older_than_the_longest_sign_in_is_over(engine: Engine) -> None:
    from sqlalchemy import update

    from data_layer.users import MAX_SESSION_AGE, session_user, sessions, start_session

    with engine.begin() as conn:
        old = start_session(conn, add_user(conn, "ana", "viewer", PASSWORD))
        long_ago = (datetime.now(UTC) - MAX_SESSION_AGE - timedelta(minutes=1)).isoformat(timespec="seconds")
        conn.execute(update(sessions).values(created_at=long_ago))
    with engine.connect() as conn:
        assert session_user(conn, old) is None
    with engine.begin() as conn:  # the next sign-in clears it away
        start_session(conn, find_user(conn, "ana"))
        assert len(conn.execute(select(sessions)).all()) == 1


def test_names_and_regions_typed_in_decomposed_unicode_are_the_same(engine: Engine) -> None:
    import unicodedata

    with engine.begin() as conn:
        added = add_user(conn, unicodedata.normalize("NFD", "Zoé"), "viewer", PASSWORD,
                         [unicodedata.normalize("NFD", "Île-de-France")])
        assert added == User("zoé", "viewer", ("Île-de-France",))
        assert find_user(conn, "ZOÉ") == added
        with pytest.raises(UserError, match="spaces only"):
            add_user(conn, "blank", "viewer", " " * 12)


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
