"""API Gateway controls (docs/security-baseline.md §1.1). Every test returns the Output it checks (P5)."""

from __future__ import annotations

import json

import pulumi

from infra.components.api import ACCESS_LOG_FORMAT, MESSAGE_SCHEMA, RESOURCE_PATH
from infra.config import TLS_POLICIES


@pulumi.runtime.test
def test_apigateway_11_domain_uses_enhanced_tls_policy_strict(dev_run):
    """APIGateway.11 / CKV_AWS_206 / P6: custom domain with an enhanced policy + STRICT, REGIONAL."""
    dn = dev_run.stack.api.domain_name

    def check(v):
        policy, mode, endpoint, cert = v
        assert policy in TLS_POLICIES and policy != "TLS_1_2"
        assert mode == "STRICT"
        assert endpoint["types"] == "REGIONAL"
        assert cert == dev_run.stack.config.certificate_arn

    return pulumi.Output.all(dn.security_policy, dn.endpoint_access_mode, dn.endpoint_configuration,
                             dn.regional_certificate_arn).apply(check)


@pulumi.runtime.test
def test_rest_api_uses_same_enhanced_tls_policy_as_domain(dev_run):
    """APIG-TLS: the API's own policy is negotiated, so RestApi carries the same policy + STRICT."""
    api, dn = dev_run.stack.api.rest_api, dev_run.stack.api.domain_name

    def check(v):
        api_policy, api_mode, dn_policy = v
        assert api_policy == dn_policy == dev_run.stack.config.tls_policy
        assert api_mode == "STRICT"

    return pulumi.Output.all(api.security_policy, api.endpoint_access_mode, dn.security_policy).apply(check)


@pulumi.runtime.test
def test_execute_api_endpoint_disabled_and_domain_mapped(dev_run, h):
    """P6: default execute-api endpoint off; traffic reaches the stage only via the mapped domain."""

    def check(resources):
        (api,) = h.of_type(resources, "aws:apigateway/restApi:RestApi")
        assert api.inputs["disableExecuteApiEndpoint"] is True
        assert api.inputs["endpointConfiguration"]["types"] == "REGIONAL"
        (mapping,) = h.of_type(resources, "aws:apigateway/basePathMapping:BasePathMapping")
        assert mapping.inputs["stageName"] == dev_run.stack.config.stage_name
        assert mapping.inputs["domainName"] == dev_run.stack.config.api_domain

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_apigateway_1_execution_logging_and_metrics_on_all_methods(dev_run, h):
    """APIGateway.1 / CKV2_AWS_4 / APIG6: */* logging ERROR + metrics; account CloudWatch role set."""
    ms = dev_run.stack.api.method_settings

    def check(v):
        path, settings = v
        assert path == "*/*"
        assert settings["logging_level"] in ("ERROR", "INFO")
        assert settings["metrics_enabled"] is True

    def check_account(resources):
        (account,) = h.of_type(resources, "aws:apigateway/account:Account")
        assert account.inputs["cloudwatchRoleArn"].startswith("arn:aws:iam")

    return pulumi.Output.all(pulumi.Output.all(ms.method_path, ms.settings).apply(check),
                             h.check_recorded(dev_run, check_account))


@pulumi.runtime.test
def test_ckv_aws_276_data_trace_off(dev_run):
    """CKV_AWS_276: no full request/response bodies (mail content, PII) in execution logs."""
    return dev_run.stack.api.method_settings.settings.apply(lambda s: _assert(s["data_trace_enabled"] is False))


@pulumi.runtime.test
def test_access_logging_json_with_key_id_never_key_value(dev_run):
    """CKV_AWS_76 / APIG1: JSON access log to a CMK log group; apiKeyId logged, API key value never."""
    stage = dev_run.stack.api.stage

    def check(v):
        settings, lg_arn = v
        fmt = json.loads(settings["format"])
        assert fmt == ACCESS_LOG_FORMAT
        assert fmt["apiKeyId"] == "$context.identity.apiKeyId"
        assert "$context.identity.apiKey" not in settings["format"].replace("$context.identity.apiKeyId", "")
        assert "tlsVersion" in fmt and "sourceIp" in fmt and "status" in fmt
        assert settings["destination_arn"] == lg_arn

    return pulumi.Output.all(stage.access_log_settings, dev_run.stack.api.access_log_group.arn).apply(check)


@pulumi.runtime.test
def test_apigateway_3_xray_tracing(dev_run):
    """APIGateway.3 / CKV_AWS_73: X-Ray active tracing on the stage."""
    return dev_run.stack.api.stage.xray_tracing_enabled.apply(lambda v: _assert(v is True))


@pulumi.runtime.test
def test_apigateway_4_stage_associated_with_web_acl(dev_run):
    """APIGateway.4 / CKV2_AWS_29 / APIG3: the WAFv2 web ACL is associated with the stage ARN."""
    assoc = dev_run.stack.waf.association

    def check(v):
        resource_arn, acl_arn, stage_arn, web_acl_arn = v
        assert resource_arn == stage_arn and acl_arn == web_acl_arn

    return pulumi.Output.all(assoc.resource_arn, assoc.web_acl_arn, dev_run.stack.api.stage.arn,
                             dev_run.stack.waf.web_acl.arn).apply(check)


@pulumi.runtime.test
def test_apigateway_5_cache_off(dev_run):
    """APIGateway.5 / CKV_AWS_308: no cache cluster (nothing cached, so nothing unencrypted)."""
    st, ms = dev_run.stack.api.stage, dev_run.stack.api.method_settings
    return pulumi.Output.all(st.cache_cluster_enabled, ms.settings).apply(
        lambda v: _assert(v[0] is False and not v[1]["caching_enabled"]))


@pulumi.runtime.test
def test_apigateway_2_stage_has_client_certificate(dev_run):
    """APIGateway.2 / CKV2_AWS_51: the stage carries a client certificate id."""
    return dev_run.stack.api.stage.client_certificate_id.apply(lambda v: _assert(bool(v)))


@pulumi.runtime.test
def test_apigateway_8_method_requires_api_key_and_cognito_scope(dev_run):
    """APIGateway.8 / CKV_AWS_59 / APIG4 / COG4, §0.8-0.9: API key + Cognito authorizer with scopes."""
    m = dev_run.stack.api.method

    def check(v):
        http_method, auth, scopes, key_required, authorizer_id = v
        assert http_method == "POST"
        assert key_required is True
        assert auth == "COGNITO_USER_POOLS" and authorizer_id
        assert sorted(scopes) == ["mail-api/send", "mail-api/send:attachments", "mail-api/send:bulk"]  # the oauthScopes of Pulumi.dev.yaml

    return pulumi.Output.all(m.http_method, m.authorization, m.authorization_scopes, m.api_key_required,
                             m.authorizer_id).apply(check)


@pulumi.runtime.test
def test_apigateway_8_api_key_required_without_cognito(no_cognito_run, h):
    """APIGateway.8 with Cognito off: every non-OPTIONS method still requires an API key."""

    def check(resources):
        for m in h.of_type(resources, "aws:apigateway/method:Method"):
            if m.inputs["httpMethod"] != "OPTIONS":
                assert m.inputs["apiKeyRequired"] is True
        assert not [r for r in resources if r.typ.startswith("aws:cognito/")]
        assert not [r for r in resources if r.typ == "aws:apigateway/authorizer:Authorizer"]

    return h.check_recorded(no_cognito_run, check)


@pulumi.runtime.test
def test_cognito_authorizer_uses_user_pool_and_authorization_header(dev_run):
    """§1.1 Cognito authorizer: COGNITO_USER_POOLS on the pool, identity source Authorization."""
    a = dev_run.stack.api.authorizer
    pool_arn = dev_run.stack.oauth.user_pool.arn

    def check(v):
        typ, providers, source, pool = v
        assert typ == "COGNITO_USER_POOLS" and providers == [pool]
        assert source == "method.request.header.Authorization"

    return pulumi.Output.all(a.type, a.provider_arns, a.identity_source, pool_arn).apply(check)


@pulumi.runtime.test
def test_ckv2_aws_53_request_validation_with_json_schema_model(dev_run):
    """CKV2_AWS_53 / APIG2: validator (body + parameters) and a draft-04 JSON-schema model on POST."""
    api = dev_run.stack.api

    def check(v):
        body, params, schema, content_type, models, validator_id, vid = v
        assert body is True and params is True
        assert json.loads(schema) == MESSAGE_SCHEMA
        assert json.loads(schema)["additionalProperties"] is False
        assert content_type == "application/json"
        assert models == {"application/json": "SendMessageRequest"}
        assert validator_id == vid

    return pulumi.Output.all(api.validator.validate_request_body, api.validator.validate_request_parameters,
                             api.model.schema, api.model.content_type, api.method.request_models,
                             api.method.request_validator_id, api.validator.id).apply(check)


@pulumi.runtime.test
def test_usage_plans_by_tier_named_and_tagged_for_rotation(dev_run, h):
    """Usage plans: one per tier, named secure-mail-api-<stack>-<tier>, tagged, throttle + quota;
    api_key_source HEADER; Pulumi never creates API keys (rotation mints them)."""
    cfg = dev_run.stack.config

    def check(resources):
        plans = {p.inputs["name"]: p for p in h.of_type(resources, "aws:apigateway/usagePlan:UsagePlan")}
        assert set(plans) == {f"secure-mail-api-dev-{t}" for t in cfg.usage_plans}
        for tier, tier_cfg in cfg.usage_plans.items():
            p = plans[f"secure-mail-api-dev-{tier}"].inputs
            assert p["tags"]["secure-mail-api:stack"] == "dev"
            assert p["throttleSettings"] == {"burstLimit": float(tier_cfg.burst_limit),
                                             "rateLimit": float(tier_cfg.rate_limit)}
            assert p["quotaSettings"] == {"limit": float(tier_cfg.quota_limit), "period": tier_cfg.quota_period}
            (stage,) = p["apiStages"]
            assert stage["stage"] == cfg.stage_name
            assert stage["throttles"][0]["path"] == f"{RESOURCE_PATH}/POST"
        (api,) = h.of_type(resources, "aws:apigateway/restApi:RestApi")
        assert api.inputs["apiKeySource"] == "HEADER"
        assert not [r for r in resources if r.typ in ("aws:apigateway/apiKey:ApiKey",
                                                      "aws:apigateway/usagePlanKey:UsagePlanKey")]

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_lambda_1_invoke_permission_scoped_to_api_route(dev_run, h):
    """Lambda.1 / CKV_AWS_301/364: only apigateway.amazonaws.com, this account, this stage+route."""

    def check(resources):
        (perm,) = h.of_type(resources, "aws:lambda/permission:Permission")
        i = perm.inputs
        assert i["principal"] == "apigateway.amazonaws.com" and i["action"] == "lambda:InvokeFunction"
        assert i["sourceAccount"] == "123456789012"
        assert i["sourceArn"].endswith(f"/{dev_run.stack.config.stage_name}/POST{RESOURCE_PATH}")

    return h.check_recorded(dev_run, check)


def _assert(condition: bool) -> None:
    assert condition


@pulumi.runtime.test
def test_request_model_is_the_shared_json_file(dev_run):
    """The model API Gateway applies is ``infra/functions/request_model.json``, the one file the
    local dev gateway applies too (no second copy to drift)."""
    from infra.functions.request_model import REQUEST_MODEL_PATH

    return dev_run.stack.api.model.schema.apply(
        lambda schema: _assert(json.loads(schema) == json.loads(REQUEST_MODEL_PATH.read_text())))


@pulumi.runtime.test
def test_every_gateway_refusal_answers_in_the_handler_error_format(dev_run, h):
    """Gateway responses for every refusal API Gateway answers itself: the handler's
    ``{"error": {"reason", "field", "message"}}`` with a static message, no-store headers, and
    the Deployment trigger covers them (a template change redeploys)."""
    from infra.functions.request_model import GATEWAY_RESPONSES

    def check(resources):
        responses = {r.inputs["responseType"]: r.inputs
                     for r in h.of_type(resources, "aws:apigateway/response:Response")}
        assert set(responses) == set(GATEWAY_RESPONSES)
        assert {"BAD_REQUEST_BODY", "DEFAULT_4XX", "DEFAULT_5XX", "INVALID_API_KEY", "THROTTLED"} <= set(responses)
        for response_type, inputs in responses.items():
            body = json.loads(inputs["responseTemplates"]["application/json"])
            assert set(body) == {"error"} and set(body["error"]) == {"reason", "field", "message"}
            assert body == GATEWAY_RESPONSES[response_type].body()
            assert "$context" not in inputs["responseTemplates"]["application/json"]
            assert inputs["responseParameters"]["gatewayresponse.header.Cache-Control"] == "'no-store'"
            if not response_type.startswith("DEFAULT_"):
                assert inputs["statusCode"] == str(GATEWAY_RESPONSES[response_type].status)

    return h.check_recorded(dev_run, check)


def _assert(condition: bool) -> None:
    assert condition
