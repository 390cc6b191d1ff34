"""The Kubernetes fan-out overlay (deploy/kubernetes/fanout): a planner CronJob and a CronJob whose
Job runs parallel worker pods draining the SQS FIFO queue; validated strictly like the base."""

from __future__ import annotations

import pytest
import yaml

from rotation.settings import Settings
from tests.unit.deploy.test_kubernetes_manifests import KUBERNETES, KUBERNETES_VERSIONS, _validate

FANOUT = KUBERNETES / "fanout"
FILES = ["configmap-fanout.yaml", "planner-cronjob.yaml", "workers-cronjob.yaml"]


def _doc(name: str) -> dict:
    return yaml.safe_load((FANOUT / name).read_text())


def test_overlay_lists_its_manifests_on_top_of_the_base_and_drops_the_single_run_cronjob():
    k = yaml.safe_load((FANOUT / "kustomization.yaml").read_text())
    assert k["resources"] == ["..", *FILES]
    assert "$patch: delete" in k["patches"][0]["patch"] and "name: rotator" in k["patches"][0]["patch"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_fanout_manifests_validate_strictly_against_kubernetes(version):
    proc = _validate(version, *[FANOUT / n for n in FILES])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_planner_plans_and_workers_drain_in_parallel_without_overlapping_runs():
    planner, workers = _doc("planner-cronjob.yaml"), _doc("workers-cronjob.yaml")
    for d, cmd in ((planner, "plan"), (workers, "work")):
        assert d["spec"]["concurrencyPolicy"] == "Forbid"
        c = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["python", "-m", "rotation.fanout"] and c["args"] == [cmd]
        assert {"configMapRef": {"name": "rotator-fanout-env"}} in c["envFrom"]
    job = workers["spec"]["jobTemplate"]["spec"]
    assert job["parallelism"] == job["completions"] >= 2


def test_worker_limits_times_parallelism_stay_within_api_gateways_account_limits(monkeypatch):
    env = _doc("configmap-fanout.yaml")["data"]
    pods = _doc("workers-cronjob.yaml")["spec"]["jobTemplate"]["spec"]["parallelism"]
    assert env["ROTATION_QUEUE_URL"].endswith(".fifo")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("VAULT_TOKEN", "placeholder-not-a-secret")
    s = Settings(_env_file=None)
    assert s.apigw_rate_per_second * pods <= 10 and s.apigw_burst * pods <= 40
    assert s.apigw_key_writes_per_second * pods <= 5
