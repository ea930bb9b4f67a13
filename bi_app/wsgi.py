"""WSGI entry points: the Flask server of the app, built in each gunicorn worker (never in the master).

``gunicorn -c deploy/gunicorn.conf.py 'bi_app.wsgi:server()'`` (the systemd unit, the ``Procfile``) serves
other machines, so it needs sign-in: without ``BI_SECRET_KEY`` it refuses to start. ``bi-app serve`` uses
:func:`on_this_machine`, which also serves the demo without sign-in (to this machine only: the guard
refuses other callers, and ``serve`` binds to a loopback address).
"""

from flask import Flask

from bi_app.app import create_app
from bi_app.config import Config, ConfigError


def server() -> Flask:
    """The app of a deployment; :class:`ConfigError` without ``BI_SECRET_KEY``."""
    config = Config.from_env()
    if not config.secret_key:
        raise ConfigError("bi_app.wsgi serves the dashboard to other machines, which needs sign-in: set BI_SECRET_KEY "
                          "(see the README's access control section) and add users with bi-app users add; for the demo "
                          "without sign-in on this machine, run bi-app serve")
    return create_app(config).server


def on_this_machine() -> Flask:
    """The app as ``bi-app serve`` runs it: with sign-in when ``BI_SECRET_KEY`` is set, else the demo."""
    return create_app(Config.from_env()).server
