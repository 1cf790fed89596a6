"""Discrete-event simulator: drives policies with emulated devices in virtual time."""
