"""Order service: accepts orders (idempotent, transactional outbox) and drives the checkout saga."""
