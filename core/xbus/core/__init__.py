"""The shared core of xbus: topic names, the change-event envelope and its serde, the
dataset catalog, settings, Kafka client configs, metrics and errors.

Producers, streams and consumers import from here and never from one another.
"""
