"""API Gateway (REST) rules: docs/security-baseline.md §1.1.

Sources: Security Hub API Gateway controls (https://docs.aws.amazon.com/securityhub/latest/userguide/
apigateway-controls.html), checkov 3.3.30, cdk-nag AwsSolutions, AWSGuard (@pulumi/awsguard) and
@pulumi/aws-compliance-policies, API Gateway security-policy docs (APIG-TLS). Wire names are camelCase.
"""

from __future__ import annotations

from typing import Any

from ._base import Finding, as_list, get, is_true, links, of_type, resource_rule, stack_rule

REST_API = "aws:apigateway/restApi:RestApi"
DOMAIN_NAME = "aws:apigateway/domainName:DomainName"
STAGE = "aws:apigateway/stage:Stage"
METHOD = "aws:apigateway/method:Method"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
REQUEST_VALIDATOR = "aws:apigateway/requestValidator:RequestValidator"
USAGE_PLAN = "aws:apigateway/usagePlan:UsagePlan"
API_KEY = "aws:apigateway/apiKey:ApiKey"
AUTHORIZER = "aws:apigateway/authorizer:Authorizer"
DEPLOYMENT = "aws:apigateway/deployment:Deployment"
WAF_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"

#: APIGateway.11: the only policies Security Hub accepts (the list cannot be changed).
RECOMMENDED_TLS_POLICIES = (
    "SecurityPolicy_TLS13_1_3_2025_09",
    "SecurityPolicy_TLS13_1_3_FIPS_2025_09",
    "SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09",
    "SecurityPolicy_TLS13_2025_EDGE",
    "SecurityPolicy_TLS12_PFS_2025_EDGE",
)
ACCESS_MODES = ("STRICT", "BASIC")
_TLS_FIX = "securityPolicy=SecurityPolicy_TLS13_1_3_2025_09 with endpointAccessMode=STRICT"
_TLS_OPTIONS: dict[str, tuple[dict[str, Any], Any]] = {
    "allowedSecurityPolicies": ({"type": "array", "items": {"type": "string", "enum": list(RECOMMENDED_TLS_POLICIES)}},
                                list(RECOMMENDED_TLS_POLICIES)),
    "requireStrictAccessMode": ({"type": "boolean"}, False),
}


def _tls_findings(props: Any, cfg: dict[str, Any]) -> list[Finding]:
    out = []
    policy = props.get("securityPolicy")
    if policy not in cfg["allowedSecurityPolicies"]:
        out.append(Finding("securityPolicy", repr(policy), _TLS_FIX))
    mode = props.get("endpointAccessMode")
    modes = ("STRICT",) if cfg["requireStrictAccessMode"] else ACCESS_MODES
    if mode not in modes:
        out.append(Finding("endpointAccessMode", repr(mode), "endpointAccessMode=STRICT (required with an "
                                                             "enhanced SecurityPolicy_* policy)"))
    return out


@resource_rule("apigateway-domain-name-tls-policy", ["APIGateway.11", "CKV_AWS_206"], DOMAIN_NAME,
               "Custom domain names use a recommended (enhanced) TLS security policy", _TLS_OPTIONS)
def domain_name_tls_policy(props, cfg, typ):
    """APIGateway.11 (Security Hub, "API Gateway domain names should use recommended security
    policies") and CKV_AWS_206: ``securityPolicy`` must be one of the five ``SecurityPolicy_*`` names
    and ``endpointAccessMode`` must be ``STRICT`` or ``BASIC`` (AWS rejects an enhanced policy without it).

    Published packs disagree: Pulumi's compliance-ready ``aws-apigateway-domainname-configure-security-policy``
    (and Datadog/KICS) require exactly ``TLS_1_2``, which *fails* APIGateway.11. This rule follows the
    newer AWS control; suppress the compliance-ready policy if you also run that pack.
    """
    return _tls_findings(props, cfg)


@resource_rule("apigateway-rest-api-tls-policy", ["BASELINE-APIG-TLS", "APIGateway.11"], REST_API,
               "The REST API's own TLS policy (the one negotiated on the custom domain) is enhanced",
               _TLS_OPTIONS)
def rest_api_tls_policy(props, cfg, typ):
    """APIG-TLS: "API Gateway uses the security policy of the API to negotiate the TLS handshake"
    on the custom domain, so the RestApi needs the same enhanced policy as the DomainName (and a
    regional RestApi defaults to ``TLS_1_0``, which cannot be moved to ``TLS_1_2`` later). Follows
    APIGateway.11 rather than the compliance-ready packs' ``TLS_1_2``."""
    return _tls_findings(props, cfg)


@resource_rule("apigateway-rest-api-execute-api-disabled", ["BASELINE-EXECUTE-API-OFF"], REST_API,
               "The default execute-api endpoint is disabled so traffic goes through the custom domain and WAF")
def execute_api_disabled(props, cfg, typ):
    """docs/security-baseline.md §1.1 "execute-api off": ``disableExecuteApiEndpoint=true`` (plus a BasePathMapping)."""
    if not is_true(props.get("disableExecuteApiEndpoint")):
        return [Finding("disableExecuteApiEndpoint", repr(props.get("disableExecuteApiEndpoint")),
                        "disableExecuteApiEndpoint=true and map the API on the custom domain")]
    return []


@resource_rule("apigateway-endpoint-type", ["AWSG-apigateway-endpoint-type"], [REST_API, DOMAIN_NAME],
               "REST APIs and domain names use an allowed endpoint type (REGIONAL by default)",
               {"allowedTypes": ({"type": "array", "items": {"type": "string"}}, ["REGIONAL"])})
def endpoint_type(props, cfg, typ):
    """AWSGuard ``apigateway-endpoint-type`` configured ``{allowRegional: true}`` (its EDGE-only default
    does not fit a WAF-fronted regional API). In pulumi-aws v7 ``endpointConfiguration.types`` is a
    string; a one-element list is accepted too."""
    types = as_list(get(props, "endpointConfiguration.types"))
    if not types or any(t not in cfg["allowedTypes"] for t in types):
        return [Finding("endpointConfiguration.types", repr(get(props, "endpointConfiguration.types")),
                        f"endpointConfiguration.types={cfg['allowedTypes'][0]!r}")]
    return []


@resource_rule("apigateway-execution-logging", ["APIGateway.1", "CKV2_AWS_4", "AwsSolutions-APIG6"],
               METHOD_SETTINGS, "Execution logging at ERROR or INFO, with metrics, on all methods")
def execution_logging(props, cfg, typ):
    """APIGateway.1 (Security Hub FSBP), CKV2_AWS_4 (also needs metrics), AwsSolutions-APIG6:
    ``settings.loggingLevel`` ERROR|INFO and ``settings.metricsEnabled`` on ``methodPath="*/*"``.
    Every stage must have such settings: :func:`stage_has_method_settings`."""
    out = []
    if get(props, "settings.loggingLevel") not in ("ERROR", "INFO"):
        out.append(Finding("settings.loggingLevel", repr(get(props, "settings.loggingLevel")),
                           "settings.loggingLevel='ERROR' (or 'INFO')"))
    if not is_true(get(props, "settings.metricsEnabled")):
        out.append(Finding("settings.metricsEnabled", repr(get(props, "settings.metricsEnabled")),
                           "settings.metricsEnabled=true"))
    return out


@stack_rule("apigateway-stage-method-settings", ["APIGateway.1", "CKV2_AWS_4", "AwsSolutions-APIG6"],
            "Every stage has MethodSettings for all methods ('*/*')", types=[STAGE, METHOD_SETTINGS])
def stage_has_method_settings(resources, cfg):
    """APIGateway.1 needs logging on *all* methods: each Stage needs a MethodSettings with
    ``methodPath="*/*"`` for the same ``stageName`` (and REST API)."""
    settings = [m for m in of_type(resources, METHOD_SETTINGS) if m.props.get("methodPath") == "*/*"]
    for stage in of_type(resources, STAGE):
        if not any(m.props.get("stageName") == stage.props.get("stageName") for m in settings):
            yield Finding("MethodSettings", "missing for methodPath '*/*'",
                          "aws.apigateway.MethodSettings(method_path='*/*', settings={logging_level, "
                          "metrics_enabled}) for this stage", stage)


@resource_rule("apigateway-no-data-trace", ["CKV_AWS_276"], METHOD_SETTINGS,
               "No data trace logging (full request/response bodies: email content and PII)")
def no_data_trace(props, cfg, typ):
    """CKV_AWS_276: ``settings.dataTraceEnabled`` must be false (bodies would put email content in logs)."""
    if is_true(get(props, "settings.dataTraceEnabled")):
        return [Finding("settings.dataTraceEnabled", "true", "settings.dataTraceEnabled=false")]
    return []


@resource_rule("apigateway-stage-access-logging", ["CKV_AWS_76", "AwsSolutions-APIG1"], STAGE,
               "Stages write JSON access logs, including the TLS version, to a log group",
               {"requiredFields": ({"type": "array", "items": {"type": "string"}},
                                   ["$context.requestId", "$context.identity.sourceIp", "$context.tlsVersion"])})
def stage_access_logging(props, cfg, typ):
    """CKV_AWS_76 / AwsSolutions-APIG1: ``accessLogSettings.destinationArn`` and a ``format`` holding
    at least requestId, sourceIp and tlsVersion (so a TLS downgrade is visible)."""
    out = []
    if not get(props, "accessLogSettings.destinationArn"):
        out.append(Finding("accessLogSettings.destinationArn", "unset", "accessLogSettings.destinationArn=<log group ARN>"))
    fmt = get(props, "accessLogSettings.format") or ""
    missing = [f for f in cfg["requiredFields"] if f not in fmt]
    if missing:
        out.append(Finding("accessLogSettings.format", f"missing {', '.join(missing)}",
                           "a JSON access-log format including " + ", ".join(cfg["requiredFields"])))
    return out


@resource_rule("apigateway-stage-xray", ["APIGateway.3", "CKV_AWS_73"], STAGE, "X-Ray active tracing on stages")
def stage_xray(props, cfg, typ):
    """APIGateway.3 (FSBP) / CKV_AWS_73: ``xrayTracingEnabled=true``."""
    if not is_true(props.get("xrayTracingEnabled")):
        return [Finding("xrayTracingEnabled", repr(props.get("xrayTracingEnabled")), "xrayTracingEnabled=true")]
    return []


@resource_rule("apigateway-stage-client-certificate", ["APIGateway.2", "CKV2_AWS_51"], STAGE,
               "Stages carry a client certificate for backend authentication")
def stage_client_certificate(props, cfg, typ):
    """APIGateway.2 / CKV2_AWS_51: ``clientCertificateId`` set (aws.apigateway.ClientCertificate)."""
    if not props.get("clientCertificateId"):
        return [Finding("clientCertificateId", "unset", "clientCertificateId=<aws.apigateway.ClientCertificate id>")]
    return []


@resource_rule("apigateway-cache-encrypted",
               ["APIGateway.5", "CKV_AWS_308", "AWSG-apigateway-method-cached-and-encrypted"],
               [STAGE, METHOD_SETTINGS], "Response cache off, or encrypted where enabled",
               {"allowCache": ({"type": "boolean"}, False)})
def cache_encrypted(props, cfg, typ):
    """APIGateway.5 / CKV_AWS_308 / AWSGuard ``apigateway-method-cached-and-encrypted``: POST /v1/messages
    must not be cached (``cacheClusterEnabled=false``); if ``allowCache`` is configured true, every
    cached method needs ``settings.cacheDataEncrypted=true``."""
    out = []
    if is_true(props.get("cacheClusterEnabled")) and not cfg["allowCache"]:
        out.append(Finding("cacheClusterEnabled", "true", "cacheClusterEnabled=false (no cache for POST /v1/messages)"))
    if is_true(get(props, "settings.cachingEnabled")) and not is_true(get(props, "settings.cacheDataEncrypted")):
        out.append(Finding("settings.cacheDataEncrypted", repr(get(props, "settings.cacheDataEncrypted")),
                           "settings.cacheDataEncrypted=true"))
    return out


@stack_rule("apigateway-stage-waf", ["APIGateway.4", "CKV2_AWS_29", "AwsSolutions-APIG3"],
            "Every stage is associated with a WAFv2 web ACL", types=[STAGE, WAF_ASSOCIATION])
def stage_waf(resources, cfg):
    """APIGateway.4 (FSBP) / CKV2_AWS_29 / AwsSolutions-APIG3: a ``WebAclAssociation`` whose
    ``resourceArn`` is the stage's ARN."""
    assocs = of_type(resources, WAF_ASSOCIATION)
    for stage in of_type(resources, STAGE):
        if not any(links(a, "resourceArn", stage) for a in assocs):
            yield Finding("WebAclAssociation", "missing",
                          "aws.wafv2.WebAclAssociation(resource_arn=stage.arn, web_acl_arn=acl.arn)", stage)


@resource_rule("apigateway-method-authorization",
               ["APIGateway.8", "CKV_AWS_59", "CKV2_AWS_70", "AwsSolutions-APIG4", "AwsSolutions-COG4"], METHOD,
               "Every non-OPTIONS method has an authorizer (with scopes for Cognito) and requires an API key",
               {"allowedAuthorizations": ({"type": "array", "items": {"type": "string"}},
                                          ["COGNITO_USER_POOLS", "AWS_IAM", "CUSTOM"]),
                "requireApiKey": ({"type": "boolean"}, True)})
def method_authorization(props, cfg, typ):
    """APIGateway.8 / CKV_AWS_59 / CKV2_AWS_70 / AwsSolutions-APIG4 and COG4: ``authorization`` is not
    ``NONE``; a ``COGNITO_USER_POOLS`` method needs ``authorizationScopes`` (client-credentials issues
    access tokens only, and without scopes the authorizer demands an ID token); and, because API keys
    identify rather than authenticate, ``apiKeyRequired=true`` on top for the usage plans."""
    if str(props.get("httpMethod", "")).upper() == "OPTIONS":
        return []
    out = []
    auth = props.get("authorization")
    if auth not in cfg["allowedAuthorizations"]:
        out.append(Finding("authorization", repr(auth), "authorization='COGNITO_USER_POOLS' with authorizerId"))
    elif auth in ("COGNITO_USER_POOLS", "CUSTOM") and not props.get("authorizerId"):
        out.append(Finding("authorizerId", "unset", "authorizerId=<aws.apigateway.Authorizer id>"))
    if auth == "COGNITO_USER_POOLS" and not as_list(props.get("authorizationScopes")):
        out.append(Finding("authorizationScopes", "empty", "authorizationScopes=['mail-api/send']"))
    if cfg["requireApiKey"] and not is_true(props.get("apiKeyRequired")):
        out.append(Finding("apiKeyRequired", repr(props.get("apiKeyRequired")), "apiKeyRequired=true"))
    return out


@resource_rule("apigateway-request-validation", ["CKV2_AWS_53", "AwsSolutions-APIG2"],
               [METHOD, REQUEST_VALIDATOR], "Requests are validated (body and parameters) against a model")
def request_validation(props, cfg, typ):
    """CKV2_AWS_53 / AwsSolutions-APIG2: each non-OPTIONS Method has ``requestValidatorId`` and, for
    methods with a body, ``requestModels['application/json']``; every RequestValidator validates both
    the body and the parameters."""
    out = []
    if typ == REQUEST_VALIDATOR:
        for key in ("validateRequestBody", "validateRequestParameters"):
            if not is_true(props.get(key)):
                out.append(Finding(key, repr(props.get(key)), f"{key}=true"))
        return out
    method = str(props.get("httpMethod", "")).upper()
    if method == "OPTIONS":
        return out
    if not props.get("requestValidatorId"):
        out.append(Finding("requestValidatorId", "unset", "requestValidatorId=<aws.apigateway.RequestValidator id>"))
    models = props.get("requestModels") or {}
    if method in ("POST", "PUT", "PATCH") and not models.get("application/json"):
        out.append(Finding("requestModels", repr(models or None),
                           "requestModels={'application/json': <aws.apigateway.Model name>}"))
    return out


@resource_rule("apigateway-usage-plan-limits", ["BASELINE-USAGE-PLANS"], [USAGE_PLAN, REST_API, API_KEY],
               "Usage plans throttle and cap every client; keys come from the x-api-key header and are enabled")
def usage_plan_limits(props, cfg, typ):
    """docs/security-baseline.md §1.1 "usage plans": each UsagePlan has ``throttleSettings`` (burst and rate),
    ``quotaSettings`` (limit, period) and at least one ``apiStages`` entry; the RestApi reads keys from
    the ``HEADER``; ApiKeys are created ``enabled`` (API Gateway keys default to disabled otherwise)."""
    out = []
    if typ == REST_API:
        if props.get("apiKeySource") != "HEADER":
            out.append(Finding("apiKeySource", repr(props.get("apiKeySource")), "apiKeySource='HEADER'"))
        return out
    if typ == USAGE_PLAN:
        for key in ("throttleSettings.burstLimit", "throttleSettings.rateLimit"):
            v = get(props, key)
            if not isinstance(v, (int, float)) or v <= 0:
                out.append(Finding(key, repr(v), f"{key} > 0"))
        if not get(props, "quotaSettings.limit") or not get(props, "quotaSettings.period"):
            out.append(Finding("quotaSettings", repr(props.get("quotaSettings")),
                               "quotaSettings={'limit': N, 'period': 'DAY'|'WEEK'|'MONTH'}"))
        if not as_list(props.get("apiStages")):
            out.append(Finding("apiStages", "empty", "apiStages=[{'apiId': api.id, 'stage': stage.stage_name}]"))
        return out
    if props.get("enabled") is False:
        out.append(Finding("enabled", "false", "enabled=true (the rotation jobs disable old keys)"))
    return out


@resource_rule("apigateway-cognito-authorizer", ["BASELINE-COGNITO-AUTHORIZER", "AwsSolutions-COG4"], AUTHORIZER,
               "Authorizers are Cognito user-pool authorizers reading the Authorization header")
def cognito_authorizer(props, cfg, typ):
    """docs/security-baseline.md §1.1 "Cognito authorizer" / AwsSolutions-COG4: ``type=COGNITO_USER_POOLS`` with
    ``providerArns`` and ``identitySource='method.request.header.Authorization'``."""
    out = []
    if props.get("type") != "COGNITO_USER_POOLS":
        out.append(Finding("type", repr(props.get("type")), "type='COGNITO_USER_POOLS'"))
    if not as_list(props.get("providerArns")):
        out.append(Finding("providerArns", "empty", "providerArns=[user_pool.arn]"))
    if props.get("identitySource") != "method.request.header.Authorization":
        out.append(Finding("identitySource", repr(props.get("identitySource")),
                           "identitySource='method.request.header.Authorization'"))
    return out


@resource_rule("apigateway-deployment-triggers", ["CKV_AWS_217", "CKV_AWS_237"], DEPLOYMENT,
               "Deployments are re-created when the API changes (Pulumi's create_before_destroy)")
def deployment_triggers(props, cfg, typ):
    """CKV_AWS_217/237 ask Terraform for ``create_before_destroy``; the Pulumi equivalent is a
    Deployment with ``triggers`` (a hash of methods/integrations), so changes are deployed and the
    old deployment is replaced after the new one exists."""
    if not props.get("triggers"):
        return [Finding("triggers", "unset", "triggers={'redeployment': <hash of methods and integrations>}")]
    return []
