"""Modbus driver (TCP in the walking skeleton; RTU and RTU-over-TCP build on the same planner)."""
