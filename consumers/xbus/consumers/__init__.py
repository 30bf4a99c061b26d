"""Subscriber connectors: what carries each subscriber's topics to where it wants them."""
