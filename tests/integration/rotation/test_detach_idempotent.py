"""Issue 12, item 20: removing a key from a usage plan is idempotent whatever the service answers
for a key that is already gone (AWS: 404 NotFoundException; moto: HTTP 500), because the plan's
keys are read back on any error instead of trusting one error code."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.ratelimit import ControlPlaneLimiter
from rotation.errors import AwsError


def test_detaching_a_key_already_out_of_the_plan_counts_as_done(env):
    apigw = ApiGatewayKeys(env.settings, limiter=ControlPlaneLimiter(1e6, 10**6, 1e6))
    plan = env.creds.usage_plan_ids["standard"]
    key_id = apigw.create_key(consumer="crm", serial=9, value="v" * 40, rotation_id="rot-9")
    apigw.attach(plan, key_id)
    apigw.detach(plan, key_id)
    assert key_id not in apigw.plan_key_ids(plan)
    apigw.detach(plan, key_id)                   # moto answers 500 here: still done
    apigw.delete_key(key_id)
    apigw.detach(plan, key_id)                   # the key itself is gone too: still done


def test_detach_error_is_raised_when_the_key_is_still_in_the_plan(env, monkeypatch):
    apigw = ApiGatewayKeys(env.settings, limiter=ControlPlaneLimiter(1e6, 10**6, 1e6))
    plan = env.creds.usage_plan_ids["standard"]
    key_id = apigw.create_key(consumer="crm", serial=9, value="w" * 40, rotation_id="rot-9")
    apigw.attach(plan, key_id)

    def fails(**_):
        raise ClientError({"Error": {"Code": "InternalFailure"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                          "DeleteUsagePlanKey")

    with monkeypatch.context() as m:
        m.setattr(apigw.client, "delete_usage_plan_key", fails)
        with pytest.raises(AwsError) as err:
            apigw.detach(plan, key_id)
    assert err.value.code == "InternalFailure" and isinstance(err.value.__cause__, ClientError)
    assert key_id in apigw.plan_key_ids(plan)
    apigw.detach(plan, key_id)
    assert key_id not in apigw.plan_key_ids(plan)


def test_detaching_a_key_another_runner_already_detached_makes_one_attempt_not_eight(env):
    """Issue 19: moto answers HTTP 500 for a key already out of the plan; botocore's standard
    retry mode tried eight times with backoff (6-10 s, longer than a short lease). The plan read
    back decides instead: exactly one DeleteUsagePlanKey attempt."""
    apigw = ApiGatewayKeys(env.settings, limiter=ControlPlaneLimiter(1e6, 10**6, 1e6))
    plan = env.creds.usage_plan_ids["standard"]
    key_id = apigw.create_key(consumer="crm", serial=9, value="x" * 40, rotation_id="rot-9")
    apigw.attach(plan, key_id)
    ApiGatewayKeys(env.settings, limiter=ControlPlaneLimiter(1e6, 10**6, 1e6)).detach(plan, key_id)  # runner B
    attempts: list[str] = []
    apigw.client.meta.events.register("before-send.api-gateway.DeleteUsagePlanKey",
                                      lambda **kw: attempts.append("DeleteUsagePlanKey"))
    apigw.detach(plan, key_id)
    assert attempts == ["DeleteUsagePlanKey"], f"{len(attempts)} attempts"
    assert key_id not in apigw.plan_key_ids(plan)
