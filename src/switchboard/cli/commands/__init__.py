"""cli/commands package."""
