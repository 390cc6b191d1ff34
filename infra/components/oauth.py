"""OAuth (optional): a Cognito user pool for OAuth2 client-credentials (docs/security-baseline.md §1.11).

Machine-to-machine only: a resource server ``mail-api`` whose scopes mirror the access levels
(stack config ``oauthScopes``: ``send``, ``send:attachments``, ``send:bulk``, each mapped to a level the
handler enforces, issue 13 part 1), an app client allowed only the ``client_credentials`` flow with
those scopes, a hosted domain for the token
endpoint, deletion protection (Cognito.6), a strong password policy (Cognito.3, harmless here)
and admin-only user creation. No identity pool is created (Cognito.2). The client secret is a
provider output that Pulumi marks secret; it is never exported.

Left out on purpose: the Plus tier with threat protection ENFORCED (Cognito.1/4, COG8) and MFA
(Cognito.5, COG2): both protect interactive user sign-in, and this pool has no users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.config import OAUTH_RESOURCE_SERVER

RESOURCE_SERVER = OAUTH_RESOURCE_SERVER
SEND_SCOPE = f"{RESOURCE_SERVER}/send"

#: What each scope lets a client do (the level it maps to is stack config ``oauthScopes``).
SCOPE_DESCRIPTIONS = {
    "send": "Send e-mail within the send level",
    "send:attachments": "Send e-mail with attachments",
    "send:bulk": "Send e-mail to many recipients",
}


@dataclass
class OAuthArgs:
    """Inputs of :class:`OAuth`: domain prefix, region, access-token lifetime (minutes)."""

    prefix: str
    region: str
    domain_prefix: str
    access_token_minutes: int = 60
    #: Scope names (without the resource server), e.g. ``send``, ``send:attachments``, ``send:bulk``.
    scopes: Sequence[str] = ("send",)
    tags: Mapping[str, str] = field(default_factory=dict)


class OAuth(pulumi.ComponentResource):
    """User pool + resource server + client-credentials client + domain.

    Attributes: ``user_pool``, ``client``, ``scopes`` (list[str], full ``mail-api/<scope>`` names, the
    method's authorization scopes), ``token_url`` (Output[str]).
    """

    def __init__(self, name: str, args: OAuthArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:auth:OAuth", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.user_pool = aws.cognito.UserPool(
            f"{name}-pool",
            name=f"{args.prefix}-clients",
            deletion_protection="ACTIVE",
            admin_create_user_config={"allow_admin_create_user_only": True},
            password_policy={"minimum_length": 14, "require_lowercase": True, "require_uppercase": True,
                             "require_numbers": True, "require_symbols": True,
                             "temporary_password_validity_days": 1},
            mfa_configuration="OFF",
            tags=dict(args.tags),
            opts=child)
        resource_server = aws.cognito.ResourceServer(
            f"{name}-resource-server", user_pool_id=self.user_pool.id, identifier=RESOURCE_SERVER,
            name="secure-mail-api",
            scopes=[{"scope_name": scope, "scope_description": SCOPE_DESCRIPTIONS.get(scope, f"Send e-mail ({scope})")}
                    for scope in args.scopes],
            opts=child)
        self.scopes = [f"{RESOURCE_SERVER}/{scope}" for scope in args.scopes]
        self.client = aws.cognito.UserPoolClient(
            f"{name}-client",
            name=f"{args.prefix}-m2m",
            user_pool_id=self.user_pool.id,
            generate_secret=True,
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_flows=["client_credentials"],
            allowed_oauth_scopes=self.scopes,
            supported_identity_providers=["COGNITO"],
            explicit_auth_flows=["ALLOW_REFRESH_TOKEN_AUTH"],
            access_token_validity=args.access_token_minutes,
            token_validity_units={"access_token": "minutes"},
            enable_token_revocation=True,
            prevent_user_existence_errors="ENABLED",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[resource_server],
                                        additional_secret_outputs=["clientSecret"]))
        self.domain = aws.cognito.UserPoolDomain(
            f"{name}-domain", domain=args.domain_prefix, user_pool_id=self.user_pool.id, opts=child)
        self.token_url = pulumi.Output.from_input(
            f"https://{args.domain_prefix}.auth.{args.region}.amazoncognito.com/oauth2/token")
        self.register_outputs({"user_pool_arn": self.user_pool.arn, "client_id": self.client.id})
