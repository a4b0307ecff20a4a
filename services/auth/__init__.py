"""Auth service: OAuth2 token endpoint, JWKS, and the gateway's forward-auth check with rate limiting."""
