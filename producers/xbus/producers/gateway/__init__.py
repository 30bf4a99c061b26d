"""The ingest gateway: change events over HTTP for departments that cannot run a Kafka client.

Read it in this order: ``app`` (the routes, and how the parts are put together),
``admission`` (key, ownership, size and JSON of a request), ``ingest`` (checking and
publishing the events, all or nothing or record by record), ``errors`` (every refusal and
its HTTP status), ``models`` (the documented shapes), ``keys`` and ``settings``.
"""
