"""Thin kopf adapters, one module per resource: they parse, delegate and report."""
