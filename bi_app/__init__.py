"""E-commerce business intelligence: a Dash dashboard on PostgreSQL or SQLite."""

from bi_app.app import create_app

__all__ = ["create_app"]
