"""WSGI entry point: ``gunicorn bi_app.wsgi:server``."""

from bi_app.app import create_app

app = create_app()
server = app.server
