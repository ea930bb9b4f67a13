"""E-commerce business intelligence: a Dash dashboard on PostgreSQL or SQLite.

The app itself is `bi_app.app.create_app`; importing the package loads nothing
else, so the command line starts without the web stack.
"""
