"""User service: registration and the caller's own profile."""
