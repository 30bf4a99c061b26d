"""Change data capture: a department's own PostgreSQL tables feeding its datasets through
Debezium on Kafka Connect, and the bridge that republishes Debezium's records as the
datasets' change events (docs/cdc.md)."""
