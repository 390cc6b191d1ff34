"""API: the REST API ``POST /v1/messages``, its stage, custom domain and usage plans.

Realizes docs/security-baseline.md §1.1: enhanced TLS policy with ``endpoint_access_mode=STRICT`` on both the
RestApi and the DomainName (APIGateway.11, CKV_AWS_206; failure case P6), execute-api endpoint
disabled, request validation with a JSON-schema model (CKV2_AWS_53, APIG2; the model and the
gateway responses, which answer in the handler's error format, come from
``infra/functions/request_model``), API key required (``api_key_source=HEADER``) plus an optional Cognito authorizer with scopes (APIGateway.8,
CKV_AWS_59, APIG4, COG4), JSON access logs carrying the API key *id* only (CKV_AWS_76, APIG1),
X-Ray (APIGateway.3), execution logging ERROR + metrics with data trace off (APIGateway.1,
CKV2_AWS_4, CKV_AWS_276), cache off (APIGateway.5), a client certificate (APIGateway.2), usage
plans by tier, and a Deployment whose ``triggers`` hash every method, integration, model,
validator, gateway response and authorizer setting (failure case P1).

Pulumi never creates API keys: the rotation engine mints them and attaches them to the usage
plans named ``secure-mail-api-<stack>-<tier>`` (tagged ``secure-mail-api:stack=<stack>``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components._common import TAG_STACK, assume_role_policy, encrypted_log_group, json_doc
from infra.config import UsagePlanTier
from infra.functions.request_model import (
    GATEWAY_RESPONSE_HEADERS,
    GATEWAY_RESPONSES,
    REQUEST_MODEL_NAME,
    load_request_model,
)

RESOURCE_PATH = "/v1/messages"
HTTP_METHOD = "POST"
ENDPOINT_ACCESS_MODE = "STRICT"

#: JSON Schema (draft-04, as API Gateway requires) of the POST /v1/messages body, read from
#: ``infra/functions/request_model.json`` (the one copy the local dev gateway applies too): the
#: structural contract of ``infra/functions/README.md`` (unknown fields refused, required fields,
#: explicit nulls, counts and sizes). The handler still does the deep checks.
MESSAGE_SCHEMA: dict[str, Any] = load_request_model()

#: Gateway responses: every refusal API Gateway answers itself has the handler's error format.
GATEWAY_RESPONSE_SPECS: dict[str, dict[str, Any]] = {
    response_type: {
        # DEFAULT_4XX / DEFAULT_5XX keep the status API Gateway chose for the error they stand for.
        "status_code": None if response_type.startswith("DEFAULT_") else str(error.status),
        "response_templates": {"application/json": json.dumps(error.body(), sort_keys=True)},
        "response_parameters": {f"gatewayresponse.header.{name}": f"'{value}'"
                                for name, value in sorted(GATEWAY_RESPONSE_HEADERS.items())},
    }
    for response_type, error in GATEWAY_RESPONSES.items()
}

#: Access-log record (JSON), one per request, joined with the handler's request record by
#: ``requestId`` (issue 13 part 2): source (``sourceIp``, ``userAgent``), time, operation
#: (``httpMethod`` + ``resourcePath``, ``stage``), caller (``apiKeyId``, OAuth ``clientId``), outcome
#: (``status``, ``errorResponseType``, ``authorizeStatus``, ``wafResponseCode``, ``integrationStatus``)
#: and size (``responseLength``). ``$context.identity.apiKeyId`` is the key *id*; the key value
#: (``$context.identity.apiKey``), the Authorization header and the body are never logged.
#: Variables: https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-variables-for-access-logging.html
ACCESS_LOG_FORMAT: dict[str, str] = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "requestTimeEpoch": "$context.requestTimeEpoch",
    "stage": "$context.stage",
    "domainName": "$context.domainName",
    "authorizeStatus": "$context.authorize.status",
    "errorResponseType": "$context.error.responseType",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "responseLatency": "$context.responseLatency",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "apiKeyId": "$context.identity.apiKeyId",
    "clientId": "$context.authorizer.claims.client_id",
    "wafResponseCode": "$context.wafResponseCode",
    "integrationError": "$context.integrationErrorMessage",
    "tlsVersion": "$context.tlsVersion",
    "cipherSuite": "$context.cipherSuite",
    "xrayTraceId": "$context.xrayTraceId",
}


def deployment_hash(spec: Any) -> str:
    """SHA-256 (hex) of a JSON-serializable API spec, keys sorted: the Deployment trigger (P1)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def usage_plan_name(stack: str, tier: str) -> str:
    """Usage plan name the rotation engine looks up: ``secure-mail-api-<stack>-<tier>``."""
    return f"secure-mail-api-{stack}-{tier}"


@dataclass
class ApiArgs:
    """Inputs of :class:`Api`. Throttle rates are requests/second; timeouts milliseconds."""

    prefix: str
    stack: str
    region: str
    account_id: pulumi.Input[str]
    api_domain: str
    certificate_arn: str
    tls_policy: str
    stage_name: str
    function_name: pulumi.Input[str]
    function_invoke_arn: pulumi.Input[str]
    audit_key_arn: pulumi.Input[str]
    log_retention_days: int
    usage_plans: Mapping[str, UsagePlanTier]
    integration_timeout_ms: int = 29000
    user_pool_arn: pulumi.Input[str] | None = None
    authorization_scopes: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class Api(pulumi.ComponentResource):
    """REST API + stage + custom domain + usage plans.

    Attributes: ``rest_api``, ``method``, ``integration``, ``authorizer`` (or None), ``model``,
    ``gateway_responses`` (dict response type -> ``aws.apigateway.Response``),
    ``deployment``, ``stage``, ``method_settings``, ``domain_name``, ``access_log_group``,
    ``usage_plans`` (dict tier -> ``aws.apigateway.UsagePlan``), ``base_url`` (Output[str]).
    """

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:api:Api", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        self.rest_api = aws.apigateway.RestApi(
            f"{name}-rest-api",
            name=f"{args.prefix}-api",
            description="secure-mail-api: send e-mail through SES",
            api_key_source="HEADER",
            disable_execute_api_endpoint=True,
            endpoint_configuration={"types": "REGIONAL"},
            security_policy=args.tls_policy,
            endpoint_access_mode=ENDPOINT_ACCESS_MODE,
            tags=tags,
            opts=child)
        v1 = aws.apigateway.Resource(f"{name}-v1", rest_api=self.rest_api.id, parent_id=self.rest_api.root_resource_id,
                                     path_part="v1", opts=child)
        messages = aws.apigateway.Resource(f"{name}-messages", rest_api=self.rest_api.id, parent_id=v1.id,
                                           path_part="messages", opts=child)
        self.model = aws.apigateway.Model(
            f"{name}-message-model", rest_api=self.rest_api.id, name=REQUEST_MODEL_NAME,
            content_type="application/json", schema=json.dumps(MESSAGE_SCHEMA, sort_keys=True), opts=child)
        self.validator = aws.apigateway.RequestValidator(
            f"{name}-validator", rest_api=self.rest_api.id, name="body-and-parameters",
            validate_request_body=True, validate_request_parameters=True, opts=child)

        authorizer_spec: dict[str, Any] | None = None
        self.authorizer: aws.apigateway.Authorizer | None = None
        if args.user_pool_arn is not None:
            authorizer_spec = {"type": "COGNITO_USER_POOLS", "provider_arns": [args.user_pool_arn],
                               "identity_source": "method.request.header.Authorization"}
            self.authorizer = aws.apigateway.Authorizer(
                f"{name}-cognito", rest_api=self.rest_api.id, name="cognito-client-credentials",
                **authorizer_spec, opts=child)
        method_spec: dict[str, Any] = {
            "http_method": HTTP_METHOD,
            "authorization": "COGNITO_USER_POOLS" if self.authorizer else "NONE",
            "authorization_scopes": list(args.authorization_scopes) if self.authorizer else None,
            "api_key_required": True,
            "request_models": {"application/json": self.model.name},
            "request_parameters": {"method.request.header.x-api-key": True},
        }
        self.method = aws.apigateway.Method(
            f"{name}-post-messages", rest_api=self.rest_api.id, resource_id=messages.id,
            request_validator_id=self.validator.id,
            authorizer_id=self.authorizer.id if self.authorizer else None,
            **{k: v for k, v in method_spec.items() if v is not None}, opts=child)
        integration_spec: dict[str, Any] = {
            "type": "AWS_PROXY", "integration_http_method": "POST", "uri": args.function_invoke_arn,
            "timeout_milliseconds": args.integration_timeout_ms,
        }
        self.integration = aws.apigateway.Integration(
            f"{name}-post-messages-integration", rest_api=self.rest_api.id, resource_id=messages.id,
            http_method=self.method.http_method, **integration_spec, opts=child)

        spec = {
            "resource_path": RESOURCE_PATH,
            "method": method_spec,
            "integration": integration_spec,
            "authorizer": authorizer_spec,
            "model": MESSAGE_SCHEMA,
            "validator": {"body": True, "parameters": True},
            "gateway_responses": GATEWAY_RESPONSE_SPECS,
        }
        self.gateway_responses: dict[str, aws.apigateway.Response] = {
            response_type: aws.apigateway.Response(
                f"{name}-gateway-response-{response_type.lower().replace('_', '-')}",
                rest_api_id=self.rest_api.id, response_type=response_type,
                **{k: v for k, v in response_spec.items() if v is not None}, opts=child)
            for response_type, response_spec in GATEWAY_RESPONSE_SPECS.items()
        }
        self.deployment_trigger = pulumi.Output.from_input(spec).apply(deployment_hash)
        self.deployment = aws.apigateway.Deployment(
            f"{name}-deployment", rest_api=self.rest_api.id,
            description="secure-mail-api deployment (redeployed when the API spec hash changes)",
            triggers={"redeployment": self.deployment_trigger},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.method, self.integration,
                                                                  *self.gateway_responses.values()],
                                        replace_on_changes=["triggers"]))

        # Account-level CloudWatch role for execution logging (APIGateway.1).
        cw_role = aws.iam.Role(
            f"{name}-cloudwatch-role", assume_role_policy=assume_role_policy("apigateway.amazonaws.com"),
            description="API Gateway execution logging", tags=tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-cloudwatch-policy", role=cw_role.id,
            policy=json_doc({"Version": "2012-10-17", "Statement": [{
                "Sid": "WriteExecutionLogs", "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups",
                           "logs:DescribeLogStreams", "logs:PutLogEvents", "logs:GetLogEvents",
                           "logs:FilterLogEvents"],
                "Resource": pulumi.Output.from_input(args.account_id).apply(
                    lambda a: f"arn:aws:logs:{args.region}:{a}:log-group:API-Gateway-Execution-Logs_*")}]}),
            opts=child)
        account = aws.apigateway.Account(f"{name}-account", cloudwatch_role_arn=cw_role.arn, opts=child)

        self.access_log_group = encrypted_log_group(
            f"{name}-access-logs", log_group_name=f"/secure-mail-api/{args.prefix}/api-access",
            kms_key_arn=args.audit_key_arn, retention_days=args.log_retention_days, tags=tags, parent=self)
        self.execution_log_group = encrypted_log_group(
            f"{name}-execution-logs",
            log_group_name=self.rest_api.id.apply(lambda i: f"API-Gateway-Execution-Logs_{i}/{args.stage_name}"),
            kms_key_arn=args.audit_key_arn, retention_days=args.log_retention_days, tags=tags, parent=self)
        client_cert = aws.apigateway.ClientCertificate(
            f"{name}-client-certificate", description="secure-mail-api backend client certificate",
            tags=tags, opts=child)
        self.stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=self.rest_api.id,
            deployment=self.deployment.id,
            stage_name=args.stage_name,
            xray_tracing_enabled=True,
            cache_cluster_enabled=False,
            client_certificate_id=client_cert.id,
            access_log_settings={"destination_arn": self.access_log_group.arn,
                                 "format": json.dumps(ACCESS_LOG_FORMAT, sort_keys=True)},
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, self.execution_log_group]))
        total_rate = sum(t.rate_limit for t in args.usage_plans.values())
        total_burst = sum(t.burst_limit for t in args.usage_plans.values())
        self.method_settings = aws.apigateway.MethodSettings(
            f"{name}-method-settings", rest_api=self.rest_api.id, stage_name=self.stage.stage_name,
            method_path="*/*",
            settings={"logging_level": "ERROR", "metrics_enabled": True, "data_trace_enabled": False,
                      "caching_enabled": False,
                      "throttling_rate_limit": total_rate, "throttling_burst_limit": total_burst},
            opts=child)

        self.domain_name = aws.apigateway.DomainName(
            f"{name}-domain",
            domain_name=args.api_domain,
            regional_certificate_arn=args.certificate_arn,
            endpoint_configuration={"types": "REGIONAL"},
            security_policy=args.tls_policy,
            endpoint_access_mode=ENDPOINT_ACCESS_MODE,
            tags=tags,
            opts=child)
        aws.apigateway.BasePathMapping(
            f"{name}-base-path", domain_name=self.domain_name.domain_name, rest_api=self.rest_api.id,
            stage_name=self.stage.stage_name, opts=child)

        self.usage_plans: dict[str, aws.apigateway.UsagePlan] = {}
        for tier, plan in args.usage_plans.items():
            self.usage_plans[tier] = aws.apigateway.UsagePlan(
                f"{name}-usage-plan-{tier}",
                name=usage_plan_name(args.stack, tier),
                description=f"secure-mail-api {args.stack} tier {tier}",
                api_stages=[{"api_id": self.rest_api.id, "stage": self.stage.stage_name,
                             "throttles": [{"path": f"{RESOURCE_PATH}/{HTTP_METHOD}",
                                            "burst_limit": plan.burst_limit, "rate_limit": plan.rate_limit}]}],
                throttle_settings={"burst_limit": plan.burst_limit, "rate_limit": plan.rate_limit},
                quota_settings={"limit": plan.quota_limit, "period": plan.quota_period},
                tags={**tags, TAG_STACK: args.stack, "secure-mail-api:tier": tier},
                opts=child)

        self.permission = aws.lambda_.Permission(
            f"{name}-invoke-permission", action="lambda:InvokeFunction", function=args.function_name,
            principal="apigateway.amazonaws.com", source_account=args.account_id,
            source_arn=self.rest_api.execution_arn.apply(
                lambda a: f"{a}/{args.stage_name}/{HTTP_METHOD}{RESOURCE_PATH}"),
            opts=child)
        self.base_url = pulumi.Output.from_input(f"https://{args.api_domain}")
        self.register_outputs({"base_url": self.base_url, "rest_api_id": self.rest_api.id,
                               "stage_arn": self.stage.arn})
