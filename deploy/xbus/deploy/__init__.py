"""Running xbus's real parts locally without Docker: Apache Kafka from its official jars, the
schema registry, and the whole stack for ``make run`` and ``make test``."""
