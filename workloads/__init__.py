"""Arrival processes and traces, load generators, the experiment runner."""
