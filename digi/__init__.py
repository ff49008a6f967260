"""Digi driver library (placeholder until the kinds/driver issue lands)."""
