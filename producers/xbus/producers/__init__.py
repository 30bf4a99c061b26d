"""What departments use to publish change events: the producer SDK and the demo department."""
