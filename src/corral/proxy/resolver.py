"""The sandbox's DNS: allowed names get a synthetic address, every other name NXDOMAIN.

Nothing is ever forwarded, so a query cannot carry data out; the real lookup happens later,
in the proxy, only for a connection to an allowed name.
"""

from __future__ import annotations

import asyncio

from . import dns


class _Resolver(asyncio.DatagramProtocol):
    def __init__(self, proxy):
        self.proxy = proxy
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        proxy = self.proxy
        try:
            query = dns.parse_query(data)
        except dns.DnsError:
            reply = dns.formerr(data)
            if reply:
                self.transport.sendto(reply, addr)
            return
        name = query.qname
        decision = proxy.rules.decide_name(name)
        if not decision.allowed:
            proxy.record(proxy.default_run, proto="dns", host=name, decision="block", rule=decision.rule,
                         reason=decision.reason)
            self.transport.sendto(dns.nxdomain(query), addr)
            return
        address = proxy.synthetic.address_for(name)
        if query.qtype in (dns.TYPE_A, dns.TYPE_ANY):
            reply = dns.answer(query, [address])
        else:
            reply = dns.answer(query, [])  # NODATA: clients fall back to the A record
        proxy.record(proxy.default_run, proto="dns", host=name, address=str(address), decision="allow",
                     rule=decision.rule, reason="synthetic address; resolved by the proxy on connect")
        self.transport.sendto(reply, addr)


async def serve_dns(proxy, sock) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Resolver(proxy), sock=sock)
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()
