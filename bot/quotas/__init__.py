"""Limits: the rules, admission through the storage port, quota days."""
