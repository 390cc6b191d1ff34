"""deploy/kubernetes/: the manifests validate strictly against named Kubernetes versions
(kubernetes-validate), and the security properties the rotator relies on are asserted field by
field: CronJob with concurrencyPolicy Forbid, hardened securityContext, resources, /tmp emptyDir,
egress only to DNS, Vault and HTTPS, a consumers ConfigMap the rotation CLI accepts, and settings
names that rotation/settings.py really reads."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from rotation.config import load_consumers_file
from rotation.settings import Settings, load_settings

from ._paths import KUBERNETES, tool

KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")


def kustomization() -> dict:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def manifest_files() -> list[str]:
    return list(kustomization()["resources"])


def load(name: str) -> dict:
    (doc,) = list(yaml.safe_load_all((KUBERNETES / name).read_text()))
    return doc


def by_kind() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for name in manifest_files():
        doc = load(name)
        out.setdefault(doc["kind"], []).append(doc)
    return out


def pod_spec() -> dict:
    (cronjob,) = by_kind()["CronJob"]
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container() -> dict:
    (c,) = pod_spec()["containers"]
    return c


def _validate(version: str, *paths) -> subprocess.CompletedProcess:
    return subprocess.run([tool("kubernetes-validate"), "--strict", "--kubernetes-version", version,
                           *[str(p) for p in paths]], capture_output=True, text=True, timeout=300, check=False)


# --- schema validation ---------------------------------------------------------------------------

def test_kustomization_lists_every_manifest_in_the_directory():
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(manifest_files()) == on_disk
    assert kustomization()["namespace"] == "mail-api-rotation"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_strictly_against_kubernetes(version):
    proc = _validate(version, *[KUBERNETES / n for n in manifest_files()])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed") == len(manifest_files()), proc.stdout


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    """The schema check is not vacuous: a misspelt field fails --strict."""
    text = (KUBERNETES / "cronjob.yaml").read_text().replace("concurrencyPolicy:", "concurrencyPolcy:")
    bad = tmp_path / "cronjob.yaml"
    bad.write_text(text)
    proc = _validate(KUBERNETES_VERSIONS[0], bad)
    assert proc.returncode != 0 and "concurrencyPolcy" in proc.stdout + proc.stderr


def test_every_object_lives_in_the_rotator_namespace():
    for kind, docs in by_kind().items():
        for doc in docs:
            if kind != "Namespace":
                assert doc["metadata"]["namespace"] == "mail-api-rotation", (kind, doc["metadata"]["name"])


def test_namespace_enforces_the_restricted_pod_security_profile():
    (ns,) = by_kind()["Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- the CronJob ---------------------------------------------------------------------------------

def test_cronjob_forbids_concurrent_runs_and_bounds_each_run():
    (cronjob,) = by_kind()["CronJob"]
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == "Etc/UTC" and len(spec["schedule"].split()) == 5
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] >= 0
    assert pod_spec()["restartPolicy"] == "Never"


def test_pod_and_container_security_context():
    pod = pod_spec()
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 10000
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container()["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc.get("privileged", False) is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


def test_container_has_requests_and_limits():
    res = container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind]), kind


def test_tmp_is_a_size_limited_empty_dir_and_other_mounts_are_read_only():
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    tmp = volumes[mounts["/tmp"]["name"]]
    assert "emptyDir" in tmp and tmp["emptyDir"]["sizeLimit"]
    for path, mount in mounts.items():
        if path != "/tmp":
            assert mount["readOnly"] is True, path


def test_service_account_token_only_as_short_lived_vault_audience_projection():
    """No default API token is mounted; Vault's Kubernetes auth gets a projected token for the
    audience ``vault`` at the path VAULT_KUBERNETES_JWT_PATH names."""
    (sa,) = by_kind()["ServiceAccount"]
    pod = pod_spec()
    assert sa["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (source,) = volumes["vault-token"]["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "vault" and token["expirationSeconds"] <= 3600
    mount = next(m for m in container()["volumeMounts"] if m["name"] == "vault-token")
    env = env_config()
    assert env["VAULT_AUTH_METHOD"] == "kubernetes"
    assert env["VAULT_KUBERNETES_JWT_PATH"] == f"{mount['mountPath']}/{token['path']}"


def test_container_runs_a_real_rotation_command_with_a_pinnable_image():
    from rotation.cli import main as rotation_cli

    c = container()
    assert c["args"][0] in rotation_cli.commands
    assert ":" in c["image"] and not c["image"].endswith(":latest")


# --- the NetworkPolicy ---------------------------------------------------------------------------

def test_network_policy_denies_ingress_and_allows_only_dns_vault_https_and_the_pod_identity_agent():
    """The rules' shape; which addresses each opens: tests/unit/deploy/test_kubernetes_egress.py."""
    (policy,) = by_kind()["NetworkPolicy"]
    spec = policy["spec"]
    labels = by_kind()["CronJob"][0]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in spec["podSelector"]["matchLabels"].items())
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and spec["ingress"] == []
    rules = spec["egress"]
    ports = [{(p["protocol"], p["port"]) for p in r["ports"]} for r in rules]
    assert ports == [{("UDP", 53), ("TCP", 53)}, {("TCP", 8200)}, {("TCP", 443)}, {("TCP", 80)}]
    dns, vault, https, pod_identity = rules
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert vault["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "vault"}
    assert [b["ipBlock"]["cidr"] for b in https["to"]] == ["0.0.0.0/0", "::/0"]
    assert [b["ipBlock"] for b in pod_identity["to"]] == [{"cidr": "169.254.170.23/32"}, {"cidr": "fd00:ec2::23/128"}]
    assert all("ports" in r and "to" in r for r in rules), "no egress rule may open every port or address"


# --- the ConfigMaps against the rotation code ----------------------------------------------------

def env_config() -> dict[str, str]:
    return next(d for d in by_kind()["ConfigMap"] if d["metadata"]["name"] == "rotator-env")["data"]


def test_env_config_names_are_settings_the_rotation_code_reads():
    aliases = {choice for field in Settings.model_fields.values() if field.validation_alias is not None
               for choice in field.validation_alias.choices if choice.isupper()}
    unknown = set(env_config()) - aliases - {"ROTATION_CONSUMERS_FILE"}
    assert unknown == set()


def test_env_config_is_accepted_by_the_settings_loader(monkeypatch):
    for key, value in env_config().items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.vault_auth_method == "kubernetes" and settings.vault_kubernetes_role == "mail-api-rotator"
    assert str(settings.vault_kubernetes_jwt_path) == env_config()["VAULT_KUBERNETES_JWT_PATH"]
    assert settings.vault_addr.startswith("https://")


def test_consumers_config_map_is_a_valid_consumers_file_without_file_targets(tmp_path):
    """The root filesystem is read-only, so a ``file`` target could never be written."""
    cm = next(d for d in by_kind()["ConfigMap"] if d["metadata"]["name"] == "rotator-consumers")
    path = tmp_path / "consumers.yaml"
    path.write_text(cm["data"]["consumers.yaml"])
    consumers = load_consumers_file(path)
    assert consumers.consumers
    raw = yaml.safe_load(cm["data"]["consumers.yaml"])
    assert all(t["type"] != "file" for c in raw["consumers"] for t in c.get("targets", []))
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert volumes["consumers"]["configMap"]["name"] == "rotator-consumers"
    assert env_config()["ROTATION_CONSUMERS_FILE"] == "/etc/rotation/consumers.yaml"
