"""Contract tier: each suite runs against an in-memory fake and against the real backend."""
