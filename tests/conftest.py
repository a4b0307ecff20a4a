"""Shared by every test folder: `ci_env` (skip locally, fail under CI) is importable from here."""
