"""The app-side client's errors (base install: no dependency beyond the standard library).

::

    KeyClientError              root: never holds a secret
    ├── KeyClientConfigError    missing or invalid configuration; names the variable
    ├── KeyUnavailable          no usable key (missing, empty, no key id, disabled, destroyed)
    │   └── VaultUnavailable    Vault unreachable, sealed, or a server error
    ├── VaultAuthError          login failed, or 403 after one fresh login
    └── TamperSuspected         a response-wrapping token was already used or does not match

hvac and requests errors become these in :mod:`rotation.client.keys` only, ``from`` the original.
"""

from __future__ import annotations

__all__ = ["KeyClientConfigError", "KeyClientError", "KeyUnavailable", "TamperSuspected", "VaultAuthError",
           "VaultUnavailable"]


class KeyClientError(Exception):
    """Root of every error this module (and :mod:`rotation.client.receiver`) raises. Never holds a secret."""


class KeyClientConfigError(KeyClientError):
    """Missing or invalid client configuration (e.g. an environment variable); names the variable."""


class KeyUnavailable(KeyClientError):
    """No usable key: the record is missing, empty, has no key id, or is disabled."""


class VaultUnavailable(KeyUnavailable):
    """Vault could not be reached, is sealed, or answered with a server error."""


class VaultAuthError(KeyClientError):
    """Login failed, or Vault still answered 403 after one fresh login."""


class TamperSuspected(KeyClientError):
    """A response-wrapping token was already unwrapped, expired, not created by
    ``sys/wrapping/wrap``, or its contents do not match the notification (failure case V6).
    Alert and have the rotation re-issue; never retry the unwrap."""
