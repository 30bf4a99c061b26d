"""The policy engine: applies grants to change events and writes each subscriber's topics."""
