"""Proof that the API honours a new key before it is promoted: :mod:`~rotation.verifiers.canary`."""
