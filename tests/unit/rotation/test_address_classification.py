"""Issue 20, item 9: an address is judged by where its packets go. IPv6 forms that carry an IPv4
address (6to4, NAT64, Teredo, IPv4-mapped/-compatible) are the IPv4 address they carry; the IANA
special-purpose blocks that are not globally reachable (192.0.0.0/24 ...) are not public, whatever
the interpreter's patch level says. Checked at three places: classify_ip, the consumers file, and
the webhook target after DNS resolution."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from rotation.config import WebhookTarget
from rotation.settings import classify_host, classify_ip
from rotation.special_addresses import embedded_ipv4, is_globally_reachable
from rotation.targets import Delivery
from rotation.targets.webhook import SignedWebhookTarget

from .test_config_validation import problems, variant

# (address, kind): each form carrying 169.254.169.254 (the metadata service), loopback, private
EMBEDDED = [
    ("2002:a9fe:a9fe::", "metadata"),                 # 6to4 (RFC 3056)
    ("2002:a9fe:a9fe:1::5", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),               # NAT64 well-known prefix (RFC 6052)
    ("64:ff9b::169.254.169.254", "metadata"),
    ("::169.254.169.254", "metadata"),                # IPv4-compatible (RFC 4291, deprecated)
    ("::ffff:169.254.169.254", "metadata"),           # IPv4-mapped
    ("2001:0:a9fe:a9fe::1", "metadata"),              # Teredo server 169.254.169.254 (RFC 4380)
    ("2001:0:4136:e378:8000:63bf:5601:fefe", "metadata"),  # Teredo client ~a9fe:0101 = 169.254.1.1
    ("2002:7f00:1::", "loopback"),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("2002:a00:1::", "private"),                      # 6to4 of 10.0.0.1
    ("64:ff9b::192.168.1.1", "private"),
    ("2002:c000:c0::", "private"),                    # 6to4 of 192.0.0.192
    ("2002::", "unroutable"),                         # 6to4 of 0.0.0.0
    ("64:ff9b::e000:1", "unroutable"),                # NAT64 of 224.0.0.1 (multicast)
    ("2002:808:808::1", "public"),                    # 6to4 of 8.8.8.8: a real public host
    ("64:ff9b::8.8.8.8", "public"),                   # NAT64 to a public host (IPv6-only networks)
]


@pytest.mark.parametrize("address,kind", EMBEDDED)
def test_an_ipv6_address_carrying_an_ipv4_address_is_classified_by_the_ipv4_address(address, kind):
    assert classify_ip(ipaddress.ip_address(address)) == kind


# IANA special-purpose registries, "Globally Reachable" column
NOT_GLOBAL = ["192.0.0.192", "192.0.0.1", "192.0.0.8", "192.0.0.170", "192.0.0.171", "192.88.99.1",
              "198.18.0.1", "100.64.0.1", "2001:2::1", "2001:db8::1", "3fff::1", "5f00::1", "64:ff9b:1::1",
              "2001:10::1"]
GLOBAL = ["192.0.0.9", "192.0.0.10", "192.31.196.1", "192.52.193.1", "192.175.48.1", "2001:1::1",
          "2001:4:112::1", "2001:20::1", "2620:4f:8000::1", "8.8.8.8", "2606:4700::1111"]


@pytest.mark.parametrize("address", NOT_GLOBAL)
def test_an_iana_special_purpose_block_that_is_not_globally_reachable_is_never_public(address):
    ip = ipaddress.ip_address(address)
    assert not is_globally_reachable(ip)
    assert classify_ip(ip) != "public"


@pytest.mark.parametrize("address", GLOBAL)
def test_a_globally_reachable_special_purpose_address_stays_public(address):
    ip = ipaddress.ip_address(address)
    assert is_globally_reachable(ip) and classify_ip(ip) == "public"


def test_teredo_yields_both_the_server_and_the_client_address():
    server, client = embedded_ipv4(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
    assert (str(server), str(client)) == ("65.54.227.120", "192.0.2.45")    # RFC 4380 example
    assert classify_ip(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2")) == "private"


@pytest.mark.parametrize("url", ["https://[2002:a9fe:a9fe::]/hook", "https://[64:ff9b::a9fe:a9fe]/hook",
                                 "https://[2001:0:a9fe:a9fe::1]/hook"])
def test_a_webhook_url_naming_an_embedded_metadata_address_is_refused_whatever_the_settings(tmp_path, url):
    assert classify_host(url) == "metadata"
    data = variant("consumers.0.targets.0", {"type": "webhook", "url": url})
    for allow in ({}, {"webhook_allow_private": True, "webhook_allow_loopback": True}):
        assert "consumers.0.targets.0.url" in problems(tmp_path, data, **allow), url


@pytest.mark.parametrize("url", ["https://192.0.0.192/hook", "https://[2002:a00:1::]/hook"])
def test_a_webhook_url_naming_a_non_global_special_address_needs_the_private_setting(tmp_path, url):
    data = variant("consumers.0.targets.0", {"type": "webhook", "url": url})
    assert "consumers.0.targets.0.url" in problems(tmp_path, data)
    assert problems(tmp_path, data, webhook_allow_private=True) == {}


class _NoVault:
    def read_webhook_secret(self, consumer):
        raise AssertionError("must not read the signing secret for a refused host")


@pytest.mark.parametrize("resolved,kind", [("2002:a9fe:a9fe::", "metadata"), ("64:ff9b::a9fe:a9fe", "metadata"),
                                           ("192.0.0.192", "private")])
def test_a_webhook_host_name_resolving_to_an_embedded_or_special_address_is_not_sent_to(
        monkeypatch, resolved, kind):
    family = socket.AF_INET6 if ":" in resolved else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (family, socket.SOCK_STREAM, 6, "", (resolved, port))])
    spec = WebhookTarget(type="webhook", url="https://hooks.example.com/mail-api-key")
    result = SignedWebhookTarget(spec, _NoVault()).push(Delivery("crm", 2, "rot-2", "kid2", "v" * 40))
    assert result.ok is False and f"resolves to a {kind} address" in result.detail
