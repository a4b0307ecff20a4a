"""Inventory service: stock per product; reserve/release/commit driven by order events."""
