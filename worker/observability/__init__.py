"""Metrics, health and status over one HTTP port."""
