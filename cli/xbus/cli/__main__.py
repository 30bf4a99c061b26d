"""``python -m xbus.cli``: the ``xbus`` command, for processes that start other xbus
processes with the same interpreter."""

from xbus.cli.main import app

app()
