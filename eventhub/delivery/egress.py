"""Where a callback may connect: the egress rules of SPEC §8, as data and pure functions.

A callback URL is checked twice. ``check_url`` runs at create/update and refuses what is
visibly wrong: a scheme other than http(s), userinfo, a malformed host, and a host that is an
IP literal (in any spelling a resolver or a browser accepts) or ``localhost`` that the rules
refuse. A name cannot be judged honestly there (DNS may answer differently at delivery time),
so ``check_address`` runs again at connect time on every address the resolver returned, and
the pool connects only to an address that passed: a DNS-rebinding answer cannot slip between
check and connect.

Refused unless ``allowed_callback_networks`` lists them (first match names the rule):

    0.0.0.0/8          unspecified         ("this network"; 0.0.0.0 reaches the local host)
    10.0.0.0/8         private network
    100.64.0.0/10      shared address space (CGNAT): a provider's internal network
    127.0.0.0/8        loopback
    169.254.0.0/16     link-local          (cloud metadata: 169.254.169.254)
    172.16.0.0/12      private network
    192.0.0.0/24       reserved            (IETF protocol assignments)
    192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24   reserved (documentation)
    192.88.99.0/24     reserved            (6to4 relay anycast)
    192.168.0.0/16     private network
    198.18.0.0/15      reserved            (benchmarking)
    224.0.0.0/4        multicast
    240.0.0.0/4        reserved            (future use; 255.255.255.255 broadcast)
    ::/128             unspecified
    ::1/128            loopback
    ::/96              reserved            (IPv4-compatible IPv6, deprecated)
    64:ff9b:1::/48     reserved            (local-use NAT64)
    100::/64           reserved            (discard)
    2001::/32          reserved            (Teredo: the IPv4 client inside is obfuscated)
    2001:db8::/32      reserved            (documentation)
    fc00::/7           private network     (unique local)
    fe80::/10          link-local
    fec0::/10          reserved            (site-local, deprecated)
    ff00::/8           multicast
    and anything else ``ipaddress`` does not call global (a safety net for this table).

An IPv4-mapped address (``::ffff:a.b.c.d``) *is* its IPv4 address: a dual-stack socket
connects to it, so it is judged, and allowed, as that address. The IPv4 address inside a
NAT64 (``64:ff9b::/96``) or 6to4 (``2002::/16``) address is judged too, since a gateway would
deliver there; such an address passes only if both it and its IPv4 address do.

With ``callback_networks_only`` the listed networks are the only ones allowed; the test suite
runs that way with ``127.0.0.0/8``, so nothing it generates can leave the machine.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SETTING = "allowed_callback_networks"

PRIVATE = "private network"
LOOPBACK = "loopback"
LINK_LOCAL = "link-local"
UNSPECIFIED = "unspecified address"
MULTICAST = "multicast"

BLOCKED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(network), rule)
    for network, rule in (
        ("0.0.0.0/8", UNSPECIFIED),
        ("10.0.0.0/8", PRIVATE),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", LOOPBACK),
        ("169.254.0.0/16", LINK_LOCAL),
        ("172.16.0.0/12", PRIVATE),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", PRIVATE),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", MULTICAST),
        ("240.0.0.0/4", "reserved (future use, broadcast)"),
        ("::/128", UNSPECIFIED),
        ("::1/128", LOOPBACK),
        ("::/96", "reserved (IPv4-compatible IPv6, deprecated)"),
        ("64:ff9b:1::/48", "reserved (local-use NAT64)"),
        ("100::/64", "reserved (discard)"),
        ("2001::/32", "reserved (Teredo)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("fc00::/7", PRIVATE),
        ("fe80::/10", LINK_LOCAL),
        ("fec0::/10", "reserved (site-local, deprecated)"),
        ("ff00::/8", MULTICAST),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOOPBACKS = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))
# A host name after IDNA: letters, digits, hyphens, underscores (seen in the wild), dots.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"0x[0-9a-f]*")


@dataclass(frozen=True, slots=True)
class Rules:
    """The egress rules, built once from settings (``from_settings``) and passed down."""

    allowed: tuple[Network, ...] = ()
    only: bool = False  # callback_networks_only: the allowed networks and nothing else

    @classmethod
    def from_settings(cls, networks: Iterable[str], only: bool) -> Rules:
        """``networks`` as ``settings.validate`` accepted them (host bits may be set)."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks), only)

    def lists(self, address: Address) -> bool:
        # Versions first: an IPv4 address is never "in" an IPv6 network, whatever its bits.
        return any(address.version == n.version and address in n for n in self.allowed)


# The settings' defaults: public addresses only.
DEFAULT = Rules()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a callback (``subject``: an address, a host or the URL) may not be reached."""

    subject: str
    rule: str
    hint: str = ""

    @property
    def message(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"callback {self.subject} refused: {self.rule}{hint}"


class Refused(Exception):
    """Connect time: no address of a callback's host is allowed. Not an ``OSError``: the
    network is not flaky, the callback is refused, and retrying it cannot help."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


# -- addresses ---------------------------------------------------------------------------------


def _blocked(address: Address) -> str | None:
    for network, rule in BLOCKED:
        if address.version == network.version and address in network:
            return rule
    if not address.is_global:
        return "reserved (not globally routable)"
    return None


def _embedded(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address a NAT64 or 6to4 address would reach through its gateway."""
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def _hint(rules: Rules) -> str:
    return "callback_networks_only is on" if rules.only else f"allow it with {_SETTING}"


def check_address(address: Address, rules: Rules) -> Refusal | None:
    """Connect time: may a callback connect to ``address``? ``None`` if it may."""
    subject = f"address {address}"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if rules.lists(address):
        return None
    if rules.only:
        return Refusal(subject, f"not in {_SETTING}", _hint(rules))
    rule = _blocked(address)
    if rule is None and isinstance(address, ipaddress.IPv6Address):
        inner = _embedded(address)
        if inner is not None:
            v4, kind = inner
            inner_rule = None if rules.lists(v4) else _blocked(v4)
            if inner_rule is not None:
                rule = f"{inner_rule} ({v4} inside a {kind} address)"
    return None if rule is None else Refusal(subject, rule, _hint(rules))


def admit(addresses: Sequence[str], rules: Rules) -> list[str]:
    """Connect time: the resolved ``addresses`` a callback may connect to, in the resolver's
    order, without repeats; raises ``Refused`` (naming the first refusal) if there is none."""
    allowed: list[str] = []
    first: Refusal | None = None
    for text in addresses:
        refusal = check_address(ipaddress.ip_address(text.partition("%")[0]), rules)
        if refusal is None:
            if text not in allowed:
                allowed.append(text)
        elif first is None:
            first = refusal
    if not allowed:
        raise Refused(first or Refusal("host", "it resolved to no address"))
    return allowed


# -- URLs --------------------------------------------------------------------------------------


def _ipv4_number(part: str) -> int | None:
    """One dotted part as ``inet_aton`` and browsers read it: 0x hex, leading-0 octal, decimal."""
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if not _DIGITS.fullmatch(part):
        return None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if set(part) <= set("01234567") else None
    return int(part)


def _ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read as the resolver (``inet_aton``) and the WHATWG URL parser read an IPv4
    literal: 1 to 4 parts, the last filling the remaining bytes (``127.1``, ``2130706433``,
    ``0x7f000001``, ``0177.0.0.1``). ``None`` for a name; ``ValueError`` if it ends in a
    number (so a browser takes it for an address) but is not a valid one."""
    parts = host.split(".")
    if _ipv4_number(parts[-1]) is None:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if len(parts) > 4 or None in numbers:
        raise ValueError(host)
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise ValueError(host)
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _loopback_allowed(rules: Rules) -> bool:
    """Whether some loopback address may be reached: ``localhost`` is then let through to
    the connect-time check, which judges the addresses it resolves to."""
    return any(
        n.overlaps(loop) for n in rules.allowed for loop in _LOOPBACKS if n.version == loop.version
    )


def check_url(uri: str, rules: Rules) -> Refusal | None:
    """Create/update: may a subscription use ``uri`` as its callback? ``None`` if it may
    (a name is then judged again, by its addresses, at every connect)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        return Refusal("URL", f"malformed URL ({exc})")
    if parts.scheme not in ("http", "https"):
        return Refusal("URL", "the scheme must be http or https")
    if "@" in parts.netloc:
        # user:password@ is a classic confusion vector (http://trusted@10.0.0.5/); credentials
        # go in callbackInfo.headers instead.
        return Refusal(
            "URL",
            "userinfo (user:password@) is not allowed",
            "send credentials in callbackInfo.headers",
        )
    host = parts.hostname
    if not host:
        return Refusal("URL", "it has no host")
    if parts.netloc.startswith("["):
        if "%" in host:
            return Refusal(f"host [{host}]", "an IPv6 zone id (scoped, link-local addresses only)")
        try:
            address: Address = ipaddress.IPv6Address(host)
        except ValueError:
            return Refusal(f"host [{host}]", "malformed IPv6 address")
        refusal = check_address(address, rules)
        return None if refusal is None else Refusal(f"host [{host}]", refusal.rule, refusal.hint)
    return check_host(host, rules)


def check_host(host: str, rules: Rules) -> Refusal | None:
    """A host that is not in brackets, normalised as the delivery client and a resolver would
    (IDNA maps full-width digits and dots, lower case, trailing dots), then judged as an
    address if it is one in any spelling, else as a name."""
    subject = f"host {host!r}"
    if "%" in host:
        # Browsers decode it, the resolver does not: the two would reach different hosts.
        return Refusal(subject, "a percent-encoded host", "write the host plainly")
    try:
        # Trailing dots first: IDNA refuses the empty labels they leave.
        name = host.rstrip(".\u3002\uff0e\uff61").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return Refusal(subject, "malformed host")
    name = name.rstrip(".")
    if not _NAME.fullmatch(name):
        return Refusal(subject, "malformed host")
    try:
        literal = _ipv4_literal(name)
    except ValueError:
        return Refusal(subject, "malformed IPv4 address")
    if literal is not None:
        refusal = check_address(literal, rules)
        if refusal is None:
            return None
        shown = subject if str(literal) == host else f"{subject} ({literal})"
        return Refusal(shown, refusal.rule, refusal.hint)
    if name == "localhost" or name.endswith(".localhost"):
        if _loopback_allowed(rules):
            return None
        return Refusal(subject, f"{LOOPBACK} (localhost)", _hint(rules))
    return None
