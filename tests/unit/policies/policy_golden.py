"""A compliant stack in wire form (camelCase, ints as floats) and helpers to mutate it.

Every resource carries an ``id``/``arn`` the way mock outputs do, so stack rules can link
companions (``bucket=<bucket id>``) to their targets offline.
"""

from __future__ import annotations

import copy
import json

ACCT = "123456789012"
KEY = f"arn:aws:kms:eu-west-1:{ACCT}:key/data"
AUDIT_KEY = f"arn:aws:kms:eu-west-1:{ACCT}:key/audit"
TLS_DENY = {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "*",
            "Resource": ["*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
VIS = {"cloudwatchMetricsEnabled": True, "metricName": "m", "sampledRequestsEnabled": True}
KEY_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "kms:*",
     "Resource": "*"},
    {"Sid": "Logs", "Effect": "Allow", "Principal": {"Service": "logs.eu-west-1.amazonaws.com"},
     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}]})
TLS = "SecurityPolicy_TLS13_1_3_2025_09"

CIS = {
    "root": '{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != "AwsServiceEvent" }',
    "unauth": '{ ($.errorCode="*UnauthorizedOperation") || ($.errorCode="AccessDenied*") }',
    "nomfa": '{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") }',
    "iam": "{($.eventName=DeleteGroupPolicy)||($.eventName=PutRolePolicy)||($.eventName=AttachRolePolicy)||"
           "($.eventName=DeletePolicyVersion)}",
    "trail": "{ ($.eventName = CreateTrail) || ($.eventName = DeleteTrail) || ($.eventName = StopLogging) }",
    "authfail": '{ ($.eventName = ConsoleLogin) && ($.errorMessage = "Failed authentication") }',
    "kms": "{ ($.eventSource = kms.amazonaws.com) && (($.eventName = DisableKey) || ($.eventName = ScheduleKeyDeletion)) }",
    "s3": "{ ($.eventSource = s3.amazonaws.com) && (($.eventName = PutBucketPolicy) || ($.eventName = DeleteBucketPolicy)) }",
    "config": "{ ($.eventSource = config.amazonaws.com) && (($.eventName=StopConfigurationRecorder)) }",
}
ALARMS = [("AWS/SES", "Reputation.BounceRate", 0.05), ("AWS/SES", "Reputation.ComplaintRate", 0.001),
          ("AWS/ApiGateway", "5XXError", 0.05), ("AWS/ApiGateway", "4XXError", 0.05),
          ("AWS/ApiGateway", "Latency", 2500.0), ("AWS/WAFV2", "BlockedRequests", 100.0),
          ("AWS/Lambda", "Errors", 0.0), ("AWS/Lambda", "Throttles", 0.0), ("AWS/Lambda", "Duration", 8000.0),
          ("AWS/Lambda", "ConcurrentExecutions", 9.0), ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1.0),
          ("AWS/SQS", "ApproximateAgeOfOldestMessage", 900.0), ("AWS/SNS", "NumberOfNotificationsFailed", 0.0)]


def _bucket(name, kms=True, log_to="access-logs"):
    bid = f"{name}_id"
    items = [
        ("aws:s3/bucket:Bucket", name, {"id": bid, "bucket": bid, "arn": f"arn:aws:s3:::{bid}"}),
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-bpa",
         {"bucket": bid, "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
          "restrictPublicBuckets": True}),
        ("aws:s3/bucketOwnershipControls:BucketOwnershipControls", f"{name}-own",
         {"bucket": bid, "rule": {"objectOwnership": "BucketOwnerEnforced"}}),
        ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", f"{name}-sse",
         {"bucket": bid, "rules": [{"applyServerSideEncryptionByDefault":
                                    ({"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY} if kms else {"sseAlgorithm": "AES256"}),
                                    "bucketKeyEnabled": kms, "blockedEncryptionTypes": ["SSE-C"]}]}),
        ("aws:s3/bucketVersioning:BucketVersioning", f"{name}-ver",
         {"bucket": bid, "versioningConfiguration": {"status": "Enabled"}}),
        ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", f"{name}-lc",
         {"bucket": bid, "rules": [{"id": "x", "status": "Enabled", "filter": {},
                                    "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7.0}}]}),
        ("aws:s3/bucketPolicy:BucketPolicy", f"{name}-policy",
         {"bucket": bid, "policy": json.dumps({"Version": "2012-10-17", "Statement": [TLS_DENY]})}),
    ]
    if log_to:
        items.append(("aws:s3/bucketLogging:BucketLogging", f"{name}-logging",
                      {"bucket": bid, "targetBucket": f"{log_to}_id", "targetPrefix": "s3/"}))
    return items


def _request_archive() -> list[tuple[str, str, dict]]:
    """The locked request-record archive and the Firehose stream that fills it."""
    items = _bucket("records")
    items[0][2]["objectLockEnabled"] = True
    items.append(("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "records-lock",
                  {"bucket": "records_id", "objectLockEnabled": "Enabled",
                   "rule": {"defaultRetention": {"mode": "GOVERNANCE", "days": 400.0}}}))
    items.append(("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream", "records-stream",
                  {"destination": "extended_s3",
                   "serverSideEncryption": {"enabled": True, "keyType": "CUSTOMER_MANAGED_CMK", "keyArn": AUDIT_KEY},
                   "extendedS3Configuration": {"bucketArn": "arn:aws:s3:::records_id", "kmsKeyArn": AUDIT_KEY,
                                               "roleArn": f"arn:aws:iam::{ACCT}:role/firehose"}}))
    return items


def golden() -> list[tuple[str, str, dict]]:
    """A fresh, fully compliant resource list."""
    res: list[tuple[str, str, dict]] = _request_archive()
    res += [("aws:kms/key:Key", k, {"arn": arn, "description": "d", "enableKeyRotation": True,
                                    "rotationPeriodInDays": 365.0, "deletionWindowInDays": 30.0, "isEnabled": True,
                                    "bypassPolicyLockoutSafetyCheck": False, "policy": KEY_POLICY})
            for k, arn in (("data-key", KEY), ("audit-key", AUDIT_KEY))]
    res += [("aws:apigateway/restApi:RestApi", "api",
             {"id": "api_id", "securityPolicy": TLS, "endpointAccessMode": "STRICT", "disableExecuteApiEndpoint": True,
              "endpointConfiguration": {"types": "REGIONAL"}, "apiKeySource": "HEADER"}),
            ("aws:apigateway/domainName:DomainName", "domain",
             {"domainName": "mail-api.example.com", "securityPolicy": TLS, "endpointAccessMode": "STRICT",
              "endpointConfiguration": {"types": "REGIONAL"}, "regionalCertificateArn": "arn:aws:acm:x"}),
            ("aws:apigateway/stage:Stage", "stage",
             {"id": "stage_id", "arn": "arn:aws:apigateway:eu-west-1::/restapis/api_id/stages/live", "stageName": "live",
              "restApi": "api_id", "deployment": "dep_id", "xrayTracingEnabled": True, "clientCertificateId": "cc_id",
              "cacheClusterEnabled": False,
              "accessLogSettings": {"destinationArn": "arn:aws:logs:eu-west-1:1:log-group:api",
                                    "format": json.dumps({"requestId": "$context.requestId",
                                                          "ip": "$context.identity.sourceIp",
                                                          "tls": "$context.tlsVersion"})}}),
            ("aws:apigateway/methodSettings:MethodSettings", "settings",
             {"restApi": "api_id", "stageName": "live", "methodPath": "*/*",
              "settings": {"loggingLevel": "ERROR", "metricsEnabled": True, "dataTraceEnabled": False,
                           "throttlingBurstLimit": 100.0, "throttlingRateLimit": 50.0}}),
            ("aws:apigateway/method:Method", "post",
             {"restApi": "api_id", "httpMethod": "POST", "authorization": "COGNITO_USER_POOLS", "authorizerId": "auth_id",
              "authorizationScopes": ["mail-api/send"], "apiKeyRequired": True, "requestValidatorId": "rv_id",
              "requestModels": {"application/json": "SendMessage"}}),
            ("aws:apigateway/requestValidator:RequestValidator", "rv",
             {"restApi": "api_id", "validateRequestBody": True, "validateRequestParameters": True}),
            ("aws:apigateway/authorizer:Authorizer", "auth",
             {"restApi": "api_id", "type": "COGNITO_USER_POOLS", "providerArns": ["arn:aws:cognito-idp:x"],
              "identitySource": "method.request.header.Authorization"}),
            ("aws:apigateway/deployment:Deployment", "dep", {"restApi": "api_id", "triggers": {"redeployment": "abc"}}),
            ("aws:apigateway/usagePlan:UsagePlan", "plan-standard",
             {"apiStages": [{"apiId": "api_id", "stage": "live"}],
              "throttleSettings": {"burstLimit": 20.0, "rateLimit": 10.0},
              "quotaSettings": {"limit": 10000.0, "period": "DAY"}}),
            ("aws:wafv2/webAclAssociation:WebAclAssociation", "waf-assoc",
             {"resourceArn": "arn:aws:apigateway:eu-west-1::/restapis/api_id/stages/live", "webAclArn": "acl_arn"})]
    rules = [
        {"name": "rate-ip", "priority": 1.0, "action": {"block": {"customResponse": {"responseCode": 429.0}}},
         "statement": {"rateBasedStatement": {"limit": 300.0, "evaluationWindowSec": 60.0, "aggregateKeyType": "IP"}},
         "visibilityConfig": VIS},
        {"name": "rate-key", "priority": 2.0, "action": {"block": {}},
         "statement": {"rateBasedStatement": {"limit": 1000.0, "evaluationWindowSec": 300.0,
                                              "aggregateKeyType": "CUSTOM_KEYS", "customKeys": [
                                                  {"header": {"name": "x-api-key", "textTransformations": [
                                                      {"priority": 0.0, "type": "NONE"}]}}]}},
         "visibilityConfig": VIS}]
    for i, g in enumerate(["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                           "AWSManagedRulesAmazonIpReputationList"]):
        rules.append({"name": g, "priority": 10.0 + i, "overrideAction": {"none": {}},
                      "statement": {"managedRuleGroupStatement": {"vendorName": "AWS", "name": g}},
                      "visibilityConfig": VIS})
    res += [("aws:wafv2/webAcl:WebAcl", "acl", {"arn": "acl_arn", "scope": "REGIONAL", "defaultAction": {"allow": {}},
                                                "rules": rules, "visibilityConfig": VIS}),
            ("aws:cloudwatch/logGroup:LogGroup", "waf-logs",
             {"arn": "arn:aws:logs:eu-west-1:1:log-group:aws-waf-logs-api", "name": "aws-waf-logs-api",
              "retentionInDays": 365.0, "kmsKeyId": AUDIT_KEY}),
            ("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "waf-logging",
             {"resourceArn": "acl_arn", "logDestinationConfigs": ["arn:aws:logs:eu-west-1:1:log-group:aws-waf-logs-api"],
              "redactedFields": [{"singleHeader": {"name": "authorization"}}, {"singleHeader": {"name": "x-api-key"}}]})]
    res += _bucket("access-logs", kms=False, log_to=None) + _bucket("archive")
    res += [("aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "account-bpa",
             {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}),
            ("aws:dynamodb/table:Table", "table",
             {"billingMode": "PAY_PER_REQUEST", "pointInTimeRecovery": {"enabled": True, "recoveryPeriodInDays": 35.0},
              "serverSideEncryption": {"enabled": True, "kmsKeyArn": KEY}, "deletionProtectionEnabled": True}),
            ("aws:sqs/queue:Queue", "dlq", {"arn": "arn:aws:sqs:eu-west-1:1:dlq", "url": "https://sqs/dlq",
                                            "kmsMasterKeyId": KEY, "messageRetentionSeconds": 1209600.0}),
            ("aws:sqs/queue:Queue", "work", {"arn": "arn:aws:sqs:eu-west-1:1:work", "url": "https://sqs/work",
                                             "kmsMasterKeyId": KEY, "redrivePolicy": json.dumps(
                                                 {"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:1:dlq", "maxReceiveCount": 5})}),
            ("aws:sqs/queuePolicy:QueuePolicy", "dlq-policy",
             {"queueUrl": "https://sqs/dlq", "policy": json.dumps({"Statement": [TLS_DENY]})}),
            ("aws:sqs/queuePolicy:QueuePolicy", "work-policy",
             {"queueUrl": "https://sqs/work", "policy": json.dumps({"Statement": [
                 {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                  "Resource": "arn:aws:sqs:eu-west-1:1:work", "Condition": {"ArnEquals": {"aws:SourceArn": "t"}}},
                 TLS_DENY]})}),
            ("aws:sns/topic:Topic", "alarms", {"arn": "arn:aws:sns:eu-west-1:1:alarms", "kmsMasterKeyId": AUDIT_KEY,
                                               "signatureVersion": 2.0}),
            ("aws:sns/topicPolicy:TopicPolicy", "alarms-policy",
             {"arn": "arn:aws:sns:eu-west-1:1:alarms", "policy": json.dumps({"Statement": [TLS_DENY]})}),
            ("aws:cloudwatch/logGroup:LogGroup", "fn-logs", {"name": "/fn", "retentionInDays": 365.0, "kmsKeyId": AUDIT_KEY}),
            ("aws:lambda/function:Function", "fn",
             {"runtime": "python3.13", "tracingConfig": {"mode": "Active"}, "reservedConcurrentExecutions": 10.0,
              "deadLetterConfig": {"targetArn": "arn:aws:sqs:eu-west-1:1:dlq"}, "kmsKeyArn": KEY,
              "environment": {"variables": {"TABLE_NAME": "t"}}, "codeSigningConfigArn": "arn:aws:lambda:csc",
              "loggingConfig": {"logFormat": "JSON", "logGroup": "/fn"}}),
            ("aws:lambda/codeSigningConfig:CodeSigningConfig", "csc",
             {"arn": "arn:aws:lambda:csc", "policies": {"untrustedArtifactOnDeployment": "Enforce"},
              "allowedPublishers": {"signingProfileVersionArns": [
                  "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/p/v1"]}}),
            ("aws:scheduler/schedule:Schedule", "schedule",
             {"scheduleExpression": "rate(1 hour)", "kmsKeyArn": KEY,
              "target": {"arn": "arn:aws:lambda:fn", "roleArn": "arn:aws:iam::1:role/s"}}),
            ("aws:lambda/permission:Permission", "fn-invoke",
             {"action": "lambda:InvokeFunction", "principal": "apigateway.amazonaws.com",
              "sourceArn": "arn:aws:execute-api:eu-west-1:1:api_id/*/POST/v1/messages"}),
            ("aws:iam/rolePolicy:RolePolicy", "fn-policy",
             {"role": "r", "policy": json.dumps({"Version": "2012-10-17", "Statement": [
                 {"Sid": "Send", "Effect": "Allow", "Action": "ses:SendEmail", "Resource": ["arn:aws:ses:x:identity/d"]},
                 {"Sid": "Key", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": KEY},
                 {"Sid": "Xray", "Effect": "Allow", "Action": ["xray:PutTraceSegments"], "Resource": "*"}]})}),
            ("aws:cloudtrail/trail:Trail", "trail",
             {"s3BucketName": "archive_id", "kmsKeyId": AUDIT_KEY, "isMultiRegionTrail": True,
              "includeGlobalServiceEvents": True, "enableLogging": True, "enableLogFileValidation": True,
              "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": True}],
              "cloudWatchLogsGroupArn": "arn:aws:logs:eu-west-1:1:log-group:trail:*",
              "cloudWatchLogsRoleArn": "arn:aws:iam::1:role/trail", "snsTopicName": "alarms"})]
    for key, pattern in CIS.items():
        res.append(("aws:cloudwatch/logMetricFilter:LogMetricFilter", f"cis-{key}",
                    {"pattern": pattern, "logGroupName": "trail",
                     "metricTransformation": {"name": f"cis-{key}", "namespace": "CIS", "value": "1", "defaultValue": "0"}}))
        res.append(("aws:cloudwatch/metricAlarm:MetricAlarm", f"cis-{key}-alarm",
                    {"namespace": "CIS", "metricName": f"cis-{key}", "threshold": 1.0,
                     "alarmDescription": f"CIS {key} Runbook: docs/operations.md#alarm-cis-{key}",
                     "alarmActions": ["arn:aws:sns:eu-west-1:1:alarms"], "actionsEnabled": True}))
    for ns, metric, threshold in ALARMS:
        res.append(("aws:cloudwatch/metricAlarm:MetricAlarm", f"alarm-{metric}",
                    {"namespace": ns, "metricName": metric, "threshold": threshold,
                     "alarmDescription": "Runbook: docs/operations.md#alarm-x",
                     "alarmActions": ["arn:aws:sns:eu-west-1:1:alarms"], "actionsEnabled": True}))
    res += [("aws:cognito/userPool:UserPool", "pool",
             {"deletionProtection": "ACTIVE", "adminCreateUserConfig": {"allowAdminCreateUserOnly": True},
              "passwordPolicy": {"minimumLength": 14.0, "requireLowercase": True, "requireUppercase": True,
                                 "requireNumbers": True, "requireSymbols": True, "temporaryPasswordValidityDays": 1.0},
              "mfaConfiguration": "OFF", "userPoolTier": "PLUS", "userPoolAddOns": {"advancedSecurityMode": "ENFORCED"}}),
            ("aws:cognito/userPoolClient:UserPoolClient", "client",
             {"generateSecret": True, "allowedOauthFlowsUserPoolClient": True, "allowedOauthFlows": ["client_credentials"],
              "allowedOauthScopes": ["mail-api/send"], "enableTokenRevocation": True,
              "preventUserExistenceErrors": "ENABLED"}),
            ("aws:cognito/identityPool:IdentityPool", "ids", {"allowUnauthenticatedIdentities": False}),
            ("aws:sesv2/configurationSet:ConfigurationSet", "cs",
             {"configurationSetName": "mail", "deliveryOptions": {"tlsPolicy": "REQUIRE"},
              "reputationOptions": {"reputationMetricsEnabled": True},
              "suppressionOptions": {"suppressedReasons": ["BOUNCE", "COMPLAINT"]}}),
            ("aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination", "cs-feedback",
             {"configurationSetName": "mail", "eventDestinationName": "fb",
              "eventDestination": {"enabled": True, "matchingEventTypes": ["BOUNCE", "COMPLAINT", "REJECT"]}}),
            ("aws:sesv2/emailIdentity:EmailIdentity", "identity",
             {"emailIdentity": "example.com", "configurationSetName": "mail",
              "dkimSigningAttributes": {"nextSigningKeyLength": "RSA_2048_BIT"}})]
    return copy.deepcopy(res)


def find(res, name):
    return next(p for _, n, p in res if n == name)


def drop(res, name):
    return [r for r in res if r[1] != name]
