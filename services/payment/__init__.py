"""Payment service: authorize and refund, idempotent per order (a fake card processor's rules)."""
