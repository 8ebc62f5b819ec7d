"""Harness integrations: hook entry points, push adapters and installers (one module each)."""
