"""Presets: the built-in registry and the readers of checkpoint formats."""
