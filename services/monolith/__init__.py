"""The monolith variant: the same public API as the seven services, in ONE process with ONE
PostgreSQL database; the checkout runs synchronously in one database transaction."""
