"""Fixtures shared by the live set-up tests: the locally generated signing key, the fake
Kubernetes TokenReview server and the setup definition (defined in test_vault_setup_live)."""

from tests.integration.vault_setup.test_vault_setup_live import (  # noqa: F401 - fixtures
    kube_api,
    pubkey_pem,
    rsa_key,
    setup_dict,
)
