"""Shared mechanics of every CloudMart service: settings, logging and tracing, metrics, faults,
JWT checks, database, event bus and the app factory. Services import from here; nothing is copied."""
