"""Stack output names: constants shared by the program, the tests and the rotation engine's docs.

None of these outputs holds a secret (failure case P4): no API key value (Pulumi never creates
keys), no Cognito client secret and no Vault AppRole secret id.
"""

API_URL = "apiBaseUrl"                    #: https://<apiDomain> ; the API is POST /v1/messages
USAGE_PLAN_IDS = "usagePlanIds"           #: {tier: usage plan id}
KMS_KEY_ARN = "kmsKeyArn"                 #: data CMK ARN (push targets encrypt with it)
AUDIT_KMS_KEY_ARN = "auditKmsKeyArn"      #: audit CMK ARN (logs, CloudTrail, alarm topic)
ALARM_TOPIC_ARN = "alarmTopicArn"         #: CMK-encrypted SNS topic every alarm notifies
ARCHIVE_BUCKET = "archiveBucketName"      #: S3 bucket for message archives (prefix messages/)
REQUEST_ARCHIVE_BUCKET = "requestArchiveBucketName"  #: Object-Locked archive of the request records
TABLE_NAME = "tableName"                  #: DynamoDB message table
ROTATOR_ROLE_ARN = "rotatorRoleArn"       #: IAM role the rotation jobs assume
REST_API_ID = "restApiId"                 #: API Gateway REST API id
STAGE_NAME = "stageName"                  #: API Gateway stage
DOMAIN_TARGET = "domainRegionalTarget"    #: create a DNS alias/CNAME of apiDomain to this
DKIM_TOKENS = "sesDkimTokens"            #: publish <token>._domainkey.<senderDomain> CNAMEs
TOKEN_URL = "oauthTokenUrl"               #: Cognito token endpoint (only when cognito.enabled)
OAUTH_CLIENT_ID = "oauthClientId"         #: Cognito app client id (only when cognito.enabled)
ROTATOR_FUNCTION_NAME = "rotatorFunctionName"  #: scheduled rotator Lambda (only when rotationSchedule.enabled)

ALL = (API_URL, USAGE_PLAN_IDS, KMS_KEY_ARN, AUDIT_KMS_KEY_ARN, ALARM_TOPIC_ARN, ARCHIVE_BUCKET,
       REQUEST_ARCHIVE_BUCKET, TABLE_NAME,
       ROTATOR_ROLE_ARN, REST_API_ID, STAGE_NAME, DOMAIN_TARGET, DKIM_TOKENS, TOKEN_URL, OAUTH_CLIENT_ID,
       ROTATOR_FUNCTION_NAME)
