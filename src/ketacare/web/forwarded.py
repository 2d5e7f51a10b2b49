"""The client's address behind trusted proxies (pure: no I/O).

``X-Forwarded-For`` is a list each proxy appends to; anyone can write its first entries. It is
read only when the connection comes from a configured trusted proxy, from the right: the
first address that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def client_address(peer: str | None, forwarded_for: str | None, networks: Sequence[Network]) -> str:
    if not peer:
        return "unknown"
    if not networks or not _trusted(peer, networks) or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed list: trust nothing in it
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops and hops[0] else peer
