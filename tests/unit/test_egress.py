"""The callback egress rules (SPEC §8) as pure functions: every spelling of a refused address
is refused at create/update, public addresses pass by default, and with
``callback_networks_only`` only the listed networks do. Nothing here touches the network."""

from __future__ import annotations

import ipaddress

import pytest

from eventhub.delivery import egress

DEFAULT = egress.DEFAULT
LOOPBACK_ONLY = egress.Rules.from_settings(["127.0.0.0/8"], only=True)
# Full-width digits and the ideographic full stop, which IDNA maps to ASCII digits and dots.
_WIDE = {ord(d): 0xFF10 + int(d) for d in "0123456789"} | {ord("."): 0x3002}


def wide(text: str) -> str:
    return text.translate(_WIDE)


def refused(uri: str, rules: egress.Rules = DEFAULT) -> str:
    refusal = egress.check_url(uri, rules)
    assert refusal is not None, f"{uri} passed"
    return refusal.message


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        # the classics
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.5:8080/", "private network"),
        ("http://172.16.0.1/", "private network"),
        ("http://172.31.255.255/", "private network"),
        ("http://192.168.1.1/", "private network"),
        ("http://127.0.0.1:9000/", "loopback"),
        ("http://127.255.255.254/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "reserved"),
        ("http://192.0.2.1/", "documentation"),
        ("http://198.18.0.1/", "benchmarking"),
        # IPv4 in every spelling inet_aton or a browser reads
        ("http://2130706433/", "loopback"),  # decimal
        ("http://0x7f000001/", "loopback"),  # hex
        ("http://0X7F000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),  # octal
        ("http://0177.0.1/", "loopback"),  # octal, short
        ("http://017700000001/", "loopback"),
        ("http://127.1/", "loopback"),  # short forms
        ("http://127.0.1/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
        ("http://2852039166/", "link-local"),  # 169.254.169.254
        ("http://0251.0376.0251.0376/", "link-local"),
        ("http://127.0.0.1./", "loopback"),  # trailing dots
        ("http://127.0.0.1../", "loopback"),
        ("http://169.254.169.254.:80/", "link-local"),
        (f"http://{wide('127.0.0.1')}/", "loopback"),
        (f"http://{wide('169.254.169.254')}./", "link-local"),
        (f"http://{wide('127.1.')}/", "loopback"),
        # IPv6, and IPv4 inside it
        ("http://[::1]/", "loopback"),
        ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[::FFFF:A9FE:A9FE]/", "link-local"),
        ("http://[0:0:0:0:0:ffff:10.0.0.1]/", "private network"),
        ("http://[::127.0.0.1]/", "IPv4-compatible"),  # deprecated IPv4-compatible
        ("http://[::a9fe:a9fe]/", "IPv4-compatible"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local (169.254.169.254 inside a NAT64"),
        ("http://[64:ff9b::7f00:1]/", "loopback (127.0.0.1 inside a NAT64"),
        ("http://[64:ff9b:1::1]/", "local-use NAT64"),
        ("http://[2002:a9fe:a9fe::]/", "link-local (169.254.169.254 inside a 6to4"),
        ("http://[2002:c0a8:101::1]/", "private network (192.168.1.1 inside a 6to4"),
        ("http://[2001::1]/", "Teredo"),
        ("http://[fd00::1]/", "private network"),
        ("http://[fc00::1]/", "private network"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[FE80::1]:8080/", "link-local"),
        ("http://[fec0::1]/", "site-local"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[2001:db8::1]/", "documentation"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://[fe80::1%25251]/", "zone id"),
        # names that are loopback by definition
        ("http://localhost/", "loopback (localhost)"),
        ("http://LOCALHOST:8080/", "loopback (localhost)"),
        ("http://localhost./", "loopback (localhost)"),
        ("http://metadata.localhost/", "loopback (localhost)"),
        ("http://a.b.LocalHost../", "loopback (localhost)"),
        # the URL itself
        ("ftp://example.com/", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("gopher://127.0.0.1:6379/", "scheme must be http or https"),
        ("example.com/hook", "scheme must be http or https"),
        ("http:///hook", "no host"),
        ("http://:80/", "no host"),
        ("http://user:pass@example.com/", "userinfo"),
        ("http://example.com@169.254.169.254/", "userinfo"),
        ("http://169.254.169.254@example.com/", "userinfo"),
        ("http://a@b@example.com/", "userinfo"),
        ("http://evil.example\\@127.0.0.1/", "userinfo"),
        ("http://:@example.com/", "userinfo"),
        ("http://%31%32%37.0.0.1/", "percent-encoded host"),
        ("http://%6c%6f%63%61%6c%68%6f%73%74/", "percent-encoded host"),
        ("http://127.0.0.1\\.example.com/", "malformed host"),
        ("http://exa mple.com/", "malformed host"),
        ("http://1.2.3.4.5/", "malformed IPv4"),
        ("http://256.0.0.1/", "malformed IPv4"),
        ("http://1.2.3.256/", "malformed IPv4"),
        ("http://1.2.65536/", "malformed IPv4"),
        ("http://4294967296/", "malformed IPv4"),
        ("http://08.0.0.1/", "malformed IPv4"),  # not octal, not decimal: refused, not guessed
        ("http://example.123/", "malformed IPv4"),  # ends in a number: browsers read an address
        ("http://[::1/", "malformed URL"),
        ("http://[1.2.3.4]/", "malformed"),
        ("http://example.com:99999/", "malformed URL"),
        ("http://example.com:port/", "malformed URL"),
    ],
)
def test_a_refused_callback_is_refused_naming_the_rule(uri: str, rule: str) -> None:
    assert rule in refused(uri)
    # With only 127.0.0.0/8 allowed, loopback in IPv4 spellings opens and nothing else does.
    narrow = egress.check_url(uri, LOOPBACK_ONLY)
    if narrow is None:
        assert rule in ("loopback", "loopback (localhost)"), uri
    else:
        assert rule in narrow.message or "not in allowed_callback_networks" in narrow.message


def test_a_refusal_says_how_to_allow_it() -> None:
    assert refused("http://10.0.0.5/") == (
        "callback host '10.0.0.5' refused: private network (allow it with allowed_callback_networks)"
    )
    assert refused("http://0x0a000005/") == (
        "callback host '0x0a000005' (10.0.0.5) refused: private network"
        " (allow it with allowed_callback_networks)"
    )
    assert refused("http://8.8.8.8/", LOOPBACK_ONLY) == (
        "callback host '8.8.8.8' refused: not in allowed_callback_networks"
        " (callback_networks_only is on)"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "http://8.8.8.8/",
        "https://1.1.1.1:8443/hook?x=1",
        "http://134744072/",  # 8.8.8.8 in decimal: public, so fine in any spelling
        "http://[2606:4700:4700::1111]/",
        "http://[::ffff:8.8.8.8]/",
        "http://[64:ff9b::808:808]/",  # NAT64 of 8.8.8.8
        "http://[2002:808:808::1]/",  # 6to4 of 8.8.8.8
        "https://example.com/hooks/1",
        "HTTPS://EXAMPLE.COM./",
        "http://hooks.example.com:8080/a/b",
        "http://bücher.example/",  # IDN
        "http://under_score.example/",
        "http://10.0.0.5.nip.io/",  # a name: judged by its addresses at connect time
        "http://localhost.example.com/",  # not under .localhost
        "http://172.32.0.1/",  # just outside 172.16.0.0/12
        "http://100.128.0.1/",  # just outside 100.64.0.0/10
    ],
)
def test_public_callbacks_pass_the_default_rules(uri: str) -> None:
    assert egress.check_url(uri, DEFAULT) is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:9000/",
        "http://127.1:9000/",
        "http://2130706433/",
        "http://[::ffff:127.0.0.1]/",
        "http://127.8.9.10/",
        "http://localhost:9000/",
        "http://hooks.example.com/",  # a name passes; its addresses are checked at connect
    ],
)
def test_with_networks_only_the_listed_networks_pass(uri: str) -> None:
    assert egress.check_url(uri, LOOPBACK_ONLY) is None


@pytest.mark.parametrize(
    "uri",
    ["http://8.8.8.8/", "http://[2606:4700::1111]/", "http://10.0.0.1/", "http://[::1]/"],
)
def test_with_networks_only_nothing_else_passes(uri: str) -> None:
    assert "not in allowed_callback_networks" in refused(uri, LOOPBACK_ONLY)


def test_allowed_networks_open_a_refused_range_and_only_it() -> None:
    lan = egress.Rules.from_settings(["10.0.0.0/8", "fd00::/8"], only=False)
    assert egress.check_url("http://10.1.2.3/", lan) is None
    assert egress.check_url("http://0x0a010203/", lan) is None
    assert egress.check_url("http://[::ffff:10.1.2.3]/", lan) is None  # mapped is the address
    assert egress.check_url("http://[fd00::5]/", lan) is None
    assert egress.check_url("http://8.8.8.8/", lan) is None  # public stays allowed
    assert "private network" in refused("http://192.168.0.1/", lan)
    assert "private network" in refused("http://[fc80::1]/", lan)  # fc00::/7 minus fd00::/8
    assert "loopback" in refused("http://localhost/", lan)


def test_localhost_passes_create_when_any_loopback_address_is_allowed() -> None:
    # Its addresses are judged at connect time: allowing 127.0.0.2 lets the name through here,
    # and the connect-time check then refuses 127.0.0.1 and ::1.
    two = egress.Rules.from_settings(["127.0.0.2/32"], only=True)
    assert egress.check_url("http://localhost:1/", two) is None
    assert "not in allowed_callback_networks" in refused("http://127.0.0.1/", two)
    six = egress.Rules.from_settings(["::1"], only=False)
    assert egress.check_url("http://localhost:1/", six) is None


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("10.0.0.5", "private network"),
        ("169.254.169.254", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "private network"),
        ("0.1.2.3", "unspecified"),
        ("239.255.255.250", "multicast"),
        ("64:ff9b::a00:5", "private network (10.0.0.5 inside a NAT64"),
    ],
)
def test_connect_time_refuses_resolved_addresses(address: str, rule: str) -> None:
    ip = ipaddress.ip_address(address)
    refusal = egress.check_address(ip, DEFAULT)
    assert refusal is not None and rule in refusal.rule
    assert refusal.message.startswith(f"callback address {ip} refused: ")
    assert refusal.message.endswith("(allow it with allowed_callback_networks)")


def test_admit_keeps_the_allowed_addresses_in_order_and_refuses_when_none_is() -> None:
    assert egress.admit(["10.0.0.5", "8.8.8.8", "8.8.8.8", "1.1.1.1"], DEFAULT) == [
        "8.8.8.8",
        "1.1.1.1",
    ]
    assert egress.admit(["::1", "127.0.0.1"], LOOPBACK_ONLY) == ["127.0.0.1"]
    with pytest.raises(egress.Refused) as caught:
        egress.admit(["10.0.0.5", "fe80::1%eth0"], DEFAULT)
    assert str(caught.value) == (
        "callback address 10.0.0.5 refused: private network (allow it with allowed_callback_networks)"
    )
    assert caught.value.refusal.rule == "private network"


def test_every_blocked_range_is_refused_and_documented() -> None:
    doc = egress.__doc__ or ""
    for network, rule in egress.BLOCKED:
        refusal = egress.check_address(network[-1], DEFAULT)  # ::/96 starts with ::/128
        assert refusal is not None and rule in refusal.rule, network
        assert str(network) in doc, f"{network} is not in egress's table"
