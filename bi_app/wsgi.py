"""WSGI entry point of a deployment: ``gunicorn bi_app.wsgi:server`` (the ``Procfile``, ``deploy/``).

A deployment serves other machines, so it needs sign-in: without ``BI_SECRET_KEY`` this refuses to
start (the demo without sign-in is ``bi-app serve``, on this machine only).
"""

from bi_app.app import create_app
from bi_app.config import Config, ConfigError

config = Config.from_env()
if not config.secret_key:
    raise ConfigError("bi_app.wsgi serves the dashboard to other machines, which needs sign-in: set BI_SECRET_KEY "
                      "(see the README's access control section) and add users with bi-app users add; for the demo "
                      "without sign-in on this machine, run bi-app serve")
app = create_app(config)
server = app.server
