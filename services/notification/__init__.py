"""Notification service: turns order outcomes into messages for the customer."""
