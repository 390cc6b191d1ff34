"""Where hvac and requests errors become :mod:`rotation.errors` for the Vault backend (the one place).

The mapping goes by hvac's exception class, which hvac chooses from the HTTP status code
(``hvac/utils.py`` ``raise_for_error``): 400 ``InvalidRequest``, 403 ``Forbidden``, 404
``InvalidPath``, 503 ``VaultDown``. Never by message text. A check-and-set conflict is a 400 on a
``cas`` write; whether it *was* a conflict is decided by the caller's ``cas_lost`` probe (it
reads the path's metadata and compares ``current_version`` with the version it sent), since
Vault answers 400 for other bad writes too (https://openbao.org/api-docs/secret/kv/kv-v2/).

Every mapped error is raised ``from`` the original, so the cause stays in tracebacks; messages
name the operation and path, never a secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import hvac.exceptions as hexc
import requests

from rotation.errors import CasConflict, VaultError, VaultLoginLockedOut, VaultPermissionDenied

__all__ = ["LOCKOUT_FIX", "vault_errors"]

#: Auth methods with user lockout (https://developer.hashicorp.com/vault/docs/concepts/user-lockout).
LOCKOUT_METHODS = frozenset({"approle", "userpass", "ldap"})
#: What an operator does about a locked-out login (docs/operations.md, "The rotator is locked out").
LOCKOUT_FIX = ("an operator lists locked role ids with `bao read sys/locked-users` (Vault: `vault read ...`) and "
               "unlocks this one with `bao write -f sys/locked-users/<mount accessor>/unlock/<role id>`, or waits for "
               "the lockout duration (15 min by default); then apply the setup's lockout policy with "
               "`rotation vault setup` (user lockout disabled on the rotator's AppRole mount)")


@contextlib.contextmanager
def vault_errors(operation: str, path: str = "", *, cas_lost: Callable[[], bool] | None = None,
                 login_method: str | None = None) -> Iterator[None]:
    """Map hvac/requests exceptions raised inside the block to our errors.

    :param operation: what was attempted (``"cas write"``, ``"login"``), for the message.
    :param path: the Vault path, for the message.
    :param cas_lost: for a check-and-set write: called on a 400; ``True`` means the path moved past
        the version sent, so :class:`~rotation.errors.CasConflict` is raised.
    :param login_method: the block is a login with this auth method (``"approle"``): a 403 is not
        about a token's policies (a login presents none). For ``approle``, ``userpass`` and
        ``ldap`` it means the role is locked out: Vault and OpenBao answer a locked-out login
        with 403 ``permission denied`` (a wrong secret id is a 400).
    :raises CasConflict: a check-and-set write lost a race.
    :raises VaultLoginLockedOut: 403 on a login with a method that has user lockout.
    :raises VaultPermissionDenied: 403 (the token's policies do not allow it, or it expired; on a
        login: the role refused the identity presented).
    :raises VaultError: any other Vault answer or a transport failure.
    """
    where = f"{operation} {path}".strip()
    try:
        yield
    except hexc.InvalidRequest as exc:
        if cas_lost is not None and cas_lost():
            raise CasConflict(f"{where}: check-and-set lost a race (another writer updated it first)") from exc
        raise VaultError(f"{where}: invalid request (HTTP 400)") from exc
    except hexc.Forbidden as exc:
        if login_method in LOCKOUT_METHODS:
            raise VaultLoginLockedOut(f"{where}: login refused with 403: the {login_method} role is locked out after "
                                      f"repeated failed logins (user lockout); {LOCKOUT_FIX}") from exc
        if login_method is not None:
            raise VaultPermissionDenied(f"{where}: login refused with 403: the {login_method} role does not accept "
                                        "this identity (check the role's bindings in the setup file)") from exc
        raise VaultPermissionDenied(f"{where}: permission denied (check the token's policies)") from exc
    except hexc.VaultDown as exc:
        raise VaultError(f"{where}: Vault is sealed or down") from exc
    except hexc.VaultError as exc:
        raise VaultError(f"{where}: {type(exc).__name__}") from exc
    except requests.RequestException as exc:
        raise VaultError(f"{where}: cannot reach Vault ({type(exc).__name__})") from exc
