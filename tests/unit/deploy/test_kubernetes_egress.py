"""Which destinations the rotator's NetworkPolicy (deploy/kubernetes/networkpolicy.yaml) lets a
pod reach, evaluated address by address the way the NetworkPolicy API defines ``ipBlock``
(``cidr`` minus ``except``; a rule applies when its port and one of its peers match):
https://kubernetes.io/docs/concepts/services-networking/network-policies/.

Allowed: public AWS endpoints on 443 and the EKS Pod Identity agent on 80. Denied: the cluster API
(service and endpoint addresses are private), private and shared ranges, the instance metadata
service, and IPv6 forms that embed those IPv4 addresses. The example overlay
(deploy/overlays/egress-example) adds interface VPC endpoints and an outside Vault and keeps every
denial; its JSON 6902 patch is applied with ``jsonpatch`` (the operations kustomize runs) and the
result validated strictly like the base."""

from __future__ import annotations

import ipaddress

import jsonpatch
import pytest
import yaml

from ._paths import DEPLOY, KUBERNETES
from .test_kubernetes_manifests import KUBERNETES_VERSIONS, _validate

OVERLAY = DEPLOY / "overlays" / "egress-example" / "kustomization.yaml"


def base_policy() -> dict:
    return yaml.safe_load((KUBERNETES / "networkpolicy.yaml").read_text())


def overlay_policy() -> dict:
    k = yaml.safe_load(OVERLAY.read_text())
    assert k["resources"] == ["../../kubernetes"]
    (patch,) = k["patches"]
    assert patch["target"] == {"kind": "NetworkPolicy", "name": "rotator"}
    return jsonpatch.apply_patch(base_policy(), yaml.safe_load(patch["patch"]))


def egress_allows(policy: dict, ip: str, port: int, protocol: str = "TCP") -> bool:
    """Whether ``policy`` lets the selected pods open ``protocol``/``port`` to address ``ip``
    (``ipBlock`` peers only: pod and namespace selectors name pods, not addresses)."""
    addr = ipaddress.ip_address(ip)
    for rule in policy["spec"].get("egress") or []:
        ports = rule.get("ports")
        if ports and not any(p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports):
            continue
        if "to" not in rule:
            return True                               # no peers listed: every destination
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block is None:
                continue
            net = ipaddress.ip_network(block["cidr"])
            if addr.version == net.version and addr in net and not any(
                    addr in ipaddress.ip_network(e) for e in block.get("except") or []):
                return True
    return False


PUBLIC_HTTPS = ["52.94.133.131", "3.5.140.2", "18.184.1.1", "2600:1f18:243e:4600::1", "2a05:d018::1"]
DENIED_HTTPS = {
    "cluster API (kubernetes service, default range)": "10.96.0.1",
    "cluster API (EKS service range)": "172.20.0.1",
    "cluster API endpoint ENI in the VPC": "10.0.12.34",
    "other pod, custom networking": "100.64.3.7",
    "private network": "192.168.1.10",
    "instance metadata": "169.254.169.254",
    "instance metadata, IPv6": "fd00:ec2::254",
    "metadata, IPv4-mapped": "::ffff:169.254.169.254",
    "metadata, NAT64": "64:ff9b::a9fe:a9fe",
    "metadata, 6to4": "2002:a9fe:a9fe::",
    "private, 6to4": "2002:a00:1::",
    "Teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "VPC unique local IPv6": "fd12:3456::1",
    "loopback": "127.0.0.1",
    "IPv6 loopback": "::1",
    "link-local IPv6": "fe80::1",
}


@pytest.mark.parametrize("ip", PUBLIC_HTTPS)
def test_public_aws_endpoints_are_reachable_on_443_only(ip):
    assert egress_allows(base_policy(), ip, 443)
    assert not egress_allows(base_policy(), ip, 80) and not egress_allows(base_policy(), ip, 8443)


@pytest.mark.parametrize(("what", "ip"), DENIED_HTTPS.items())
def test_the_cluster_api_private_ranges_and_metadata_are_denied_on_every_port_tried(what, ip):
    for port in (443, 80, 6443, 10250, 8200):
        assert not egress_allows(base_policy(), ip, port), (what, ip, port)


@pytest.mark.parametrize("ip", ["169.254.170.23", "fd00:ec2::23"])
def test_the_eks_pod_identity_agent_is_reachable_on_80_only(ip):
    assert egress_allows(base_policy(), ip, 80)
    assert not egress_allows(base_policy(), ip, 443)


def test_the_example_overlay_adds_vpc_endpoints_and_an_outside_vault_and_keeps_every_denial():
    policy = overlay_policy()
    assert egress_allows(policy, "10.0.64.5", 443) and not egress_allows(policy, "10.0.64.5", 80)
    assert egress_allows(policy, "10.0.32.10", 8200) and not egress_allows(policy, "10.0.32.10", 443)
    assert not egress_allows(policy, "10.0.32.11", 8200)
    for what, ip in DENIED_HTTPS.items():
        if not ip.startswith("10.0.") or ip in ("10.0.64.5", "10.0.32.10"):
            assert not egress_allows(policy, ip, 443), what
    assert egress_allows(policy, "169.254.170.23", 80) and not egress_allows(policy, "169.254.169.254", 80)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_example_overlays_policy_validates_strictly(version, tmp_path):
    out = tmp_path / "networkpolicy.yaml"
    out.write_text(yaml.safe_dump(overlay_policy()))
    proc = _validate(version, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_evaluator_is_not_vacuous():
    """A policy with 443 open to everything lets the metadata service through: the checks above
    would catch the policy this one replaced."""
    wide = {"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}],
                                 "ports": [{"protocol": "TCP", "port": 443}]}]}}
    assert egress_allows(wide, "10.96.0.1", 443)
    assert not egress_allows(wide, "169.254.170.23", 80)
