"""The ``xbus`` command: one entry point for every component and task."""
