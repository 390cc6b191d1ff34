"""Cognito and SES rules: docs/security-baseline.md §1.11 (OAuth2 client credentials) and §1.12 (SES v2).

Sources: Security Hub Cognito controls (https://docs.aws.amazon.com/securityhub/latest/userguide/cognito-controls.html),
checkov 3.3.30 (CKV_AWS_365/366), cdk-nag AwsSolutions COG1/COG2/COG7/COG8, the SES v2 API reference.
"""

from __future__ import annotations

from ._base import Finding, as_list, get, is_true, of_type, resource_rule, stack_rule

USER_POOL = "aws:cognito/userPool:UserPool"
USER_POOL_CLIENT = "aws:cognito/userPoolClient:UserPoolClient"
IDENTITY_POOL = "aws:cognito/identityPool:IdentityPool"
CONFIGURATION_SET = "aws:sesv2/configurationSet:ConfigurationSet"
EVENT_DESTINATION = "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination"
EMAIL_IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"


@resource_rule("cognito-client-credentials-only", ["BASELINE-COGNITO-CLIENT"], USER_POOL_CLIENT,
               "App clients use only the client-credentials flow, with a secret, scopes and token revocation")
def client_credentials(props, cfg, typ):
    """docs/security-baseline.md §1.11 "client": ``allowedOauthFlows == ['client_credentials']``, ``generateSecret``,
    ``allowedOauthFlowsUserPoolClient``, non-empty ``allowedOauthScopes``, ``enableTokenRevocation`` and
    ``preventUserExistenceErrors=ENABLED``."""
    out = []
    if as_list(props.get("allowedOauthFlows")) != ["client_credentials"]:
        out.append(Finding("allowedOauthFlows", repr(props.get("allowedOauthFlows")), "allowedOauthFlows=['client_credentials']"))
    for key in ("generateSecret", "allowedOauthFlowsUserPoolClient", "enableTokenRevocation"):
        if not is_true(props.get(key)):
            out.append(Finding(key, repr(props.get(key)), f"{key}=true"))
    if not as_list(props.get("allowedOauthScopes")):
        out.append(Finding("allowedOauthScopes", "empty", "allowedOauthScopes=['mail-api/send']"))
    if props.get("preventUserExistenceErrors") != "ENABLED":
        out.append(Finding("preventUserExistenceErrors", repr(props.get("preventUserExistenceErrors")),
                           "preventUserExistenceErrors='ENABLED'"))
    return out


@resource_rule("cognito-deletion-protection", ["Cognito.6"], USER_POOL, "User pools have deletion protection")
def pool_deletion_protection(props, cfg, typ):
    """Cognito.6: ``deletionProtection=ACTIVE``."""
    if props.get("deletionProtection") != "ACTIVE":
        return [Finding("deletionProtection", repr(props.get("deletionProtection")), "deletionProtection='ACTIVE'")]
    return []


@resource_rule("cognito-password-policy", ["Cognito.3", "AwsSolutions-COG1"], USER_POOL,
               "User pools require strong passwords",
               {"minimumLength": ({"type": "integer", "minimum": 8}, 8)})
def password_policy(props, cfg, typ):
    """Cognito.3 / AwsSolutions-COG1: ``passwordPolicy`` with minimumLength >= 8, upper, lower, number and
    symbol required, and ``temporaryPasswordValidityDays`` <= 7."""
    pp = props.get("passwordPolicy") or {}
    out = []
    if float(pp.get("minimumLength") or 0) < cfg["minimumLength"]:
        out.append(Finding("passwordPolicy.minimumLength", repr(pp.get("minimumLength")), f">= {cfg['minimumLength']}"))
    for key in ("requireLowercase", "requireUppercase", "requireNumbers", "requireSymbols"):
        if not is_true(pp.get(key)):
            out.append(Finding(f"passwordPolicy.{key}", repr(pp.get(key)), "true"))
    if float(pp.get("temporaryPasswordValidityDays") or 7) > 7:
        out.append(Finding("passwordPolicy.temporaryPasswordValidityDays", repr(pp.get("temporaryPasswordValidityDays")), "<= 7"))
    return out


@resource_rule("cognito-mfa", ["Cognito.5", "AwsSolutions-COG2"], USER_POOL,
               "Password user pools require MFA; machine-only pools forbid self sign-up")
def pool_mfa(props, cfg, typ):
    """Cognito.5 / AwsSolutions-COG2 apply to pools with password users ("if users exist", baseline
    §1.11): ``mfaConfiguration=ON`` with software-token MFA, unless the pool is machine-to-machine only,
    which this rule recognises by ``adminCreateUserConfig.allowAdminCreateUserOnly=true`` (no self sign-up,
    so no password user can appear without an administrator)."""
    if props.get("mfaConfiguration") == "ON":
        if not is_true(get(props, "softwareTokenMfaConfiguration.enabled")):
            return [Finding("softwareTokenMfaConfiguration.enabled", "unset", "softwareTokenMfaConfiguration={'enabled': True}")]
        return []
    if is_true(get(props, "adminCreateUserConfig.allowAdminCreateUserOnly")):
        return []
    return [Finding("mfaConfiguration", repr(props.get("mfaConfiguration")),
                    "mfaConfiguration='ON' (or adminCreateUserConfig.allowAdminCreateUserOnly=true for an M2M-only pool)")]


@resource_rule("cognito-threat-protection", ["Cognito.1", "Cognito.4", "AwsSolutions-COG8"], USER_POOL,
               "User pools enforce threat protection (Plus tier), or carry a justified suppression")
def threat_protection(props, cfg, typ):
    """Cognito.1 / Cognito.4 / AwsSolutions-COG8: ``userPoolTier=PLUS`` and
    ``userPoolAddOns.advancedSecurityMode=ENFORCED``. It has a cost and acts on user sign-ins, so an
    M2M-only pool may suppress it, with the reason, through ``suppressions`` (baseline §4)."""
    out = []
    if props.get("userPoolTier") != "PLUS":
        out.append(Finding("userPoolTier", repr(props.get("userPoolTier")), "userPoolTier='PLUS' (or a justified suppression)"))
    if get(props, "userPoolAddOns.advancedSecurityMode") != "ENFORCED":
        out.append(Finding("userPoolAddOns.advancedSecurityMode", repr(get(props, "userPoolAddOns.advancedSecurityMode")),
                           "userPoolAddOns={'advanced_security_mode': 'ENFORCED'}"))
    return out


@resource_rule("cognito-no-unauthenticated-identities", ["Cognito.2", "CKV_AWS_366", "AwsSolutions-COG7"],
               IDENTITY_POOL, "Identity pools give no access to unauthenticated identities")
def no_unauth(props, cfg, typ):
    """Cognito.2 / CKV_AWS_366 / AwsSolutions-COG7: ``allowUnauthenticatedIdentities=false``."""
    if props.get("allowUnauthenticatedIdentities") is not False:
        return [Finding("allowUnauthenticatedIdentities", repr(props.get("allowUnauthenticatedIdentities")),
                        "allowUnauthenticatedIdentities=false")]
    return []


@resource_rule("ses-configuration-set-tls", ["CKV_AWS_365", "BASELINE-SES-CONFIG-SET"], CONFIGURATION_SET,
               "Configuration sets require TLS to recipients, track reputation and suppress bounces/complaints")
def config_set(props, cfg, typ):
    """CKV_AWS_365 (written for the v1 ``aws_ses_configuration_set``, applied here to SES v2):
    ``deliveryOptions.tlsPolicy=REQUIRE``; baseline §1.12 also wants
    ``reputationOptions.reputationMetricsEnabled`` and ``suppressionOptions.suppressedReasons`` BOUNCE+COMPLAINT."""
    out = []
    if get(props, "deliveryOptions.tlsPolicy") != "REQUIRE":
        out.append(Finding("deliveryOptions.tlsPolicy", repr(get(props, "deliveryOptions.tlsPolicy")), "tlsPolicy='REQUIRE'"))
    if not is_true(get(props, "reputationOptions.reputationMetricsEnabled")):
        out.append(Finding("reputationOptions.reputationMetricsEnabled", repr(get(props, "reputationOptions.reputationMetricsEnabled")),
                           "reputationMetricsEnabled=true"))
    reasons = set(as_list(get(props, "suppressionOptions.suppressedReasons")))
    if not {"BOUNCE", "COMPLAINT"} <= reasons:
        out.append(Finding("suppressionOptions.suppressedReasons", repr(sorted(reasons)), "['BOUNCE', 'COMPLAINT']"))
    return out


@stack_rule("ses-feedback-events", ["BASELINE-SES-FEEDBACK"],
            "Bounce and complaint events are published to a destination", types=[CONFIGURATION_SET, EVENT_DESTINATION])
def feedback_events(resources, cfg):
    """docs/security-baseline.md §1.12 "feedback": for every configuration set, an enabled
    ``ConfigurationSetEventDestination`` whose ``matchingEventTypes`` include BOUNCE and COMPLAINT."""
    dests = [d for d in of_type(resources, EVENT_DESTINATION) if is_true(get(d.props, "eventDestination.enabled"))]
    for cs in of_type(resources, CONFIGURATION_SET):
        name = cs.props.get("configurationSetName")
        mine = [d for d in dests if d.props.get("configurationSetName") in (name, None) or
                d.props.get("configurationSetName") == cs.name]
        types = {t for d in mine for t in as_list(get(d.props, "eventDestination.matchingEventTypes"))}
        if not {"BOUNCE", "COMPLAINT"} <= types:
            yield Finding("ConfigurationSetEventDestination", f"covers {sorted(types)}",
                          "an enabled event destination matching BOUNCE and COMPLAINT (SNS or CloudWatch)", cs)


@resource_rule("ses-identity-dkim", ["BASELINE-SES-IDENTITY"], EMAIL_IDENTITY,
               "Sending identities use 2048-bit DKIM and a default configuration set")
def identity_dkim(props, cfg, typ):
    """docs/security-baseline.md §1.12 "identity": ``configurationSetName`` set (so every send gets the TLS/reputation
    settings) and ``dkimSigningAttributes.nextSigningKeyLength=RSA_2048_BIT`` (unless BYODKIM)."""
    out = []
    if not props.get("configurationSetName"):
        out.append(Finding("configurationSetName", "unset", "configurationSetName=<configuration set name>"))
    dkim = props.get("dkimSigningAttributes") or {}
    if not dkim.get("domainSigningPrivateKey") and dkim.get("nextSigningKeyLength") != "RSA_2048_BIT":
        out.append(Finding("dkimSigningAttributes.nextSigningKeyLength", repr(dkim.get("nextSigningKeyLength")),
                           "'RSA_2048_BIT'"))
    return out
