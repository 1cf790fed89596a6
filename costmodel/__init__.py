"""Profiles, device models (emulated truth), the LightGBM cost model and analytic models."""
