"""What a sandboxed program sees of the network: proxy variables and a resolver. Pure."""

from __future__ import annotations

import os
import sys

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def proxy_environment(net, policy) -> dict[str, str]:
    """Every convention tools use to find a proxy, with per-run credentials in the URLs."""
    creds = f"{net.user}:{net.token}@"
    http = f"http://{creds}127.0.0.1:{net.http_port}"
    socks = f"socks5h://{creds}127.0.0.1:{net.socks_port}"
    # Loopback is the sandbox's own (servers it starts work), so it bypasses the proxy,
    # except for loopback destinations the policy explicitly allows on the host: those
    # must go through the proxy, or they would be stranded in the empty sandbox loopback.
    host_loopback = _allowed_loopback(policy.allowed_domains)
    no_proxy = ",".join(n for n in LOOPBACK_NAMES if n not in host_loopback)
    env = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "GRPC_PROXY", "grpc_proxy",
                 "DOCKER_HTTP_PROXY", "DOCKER_HTTPS_PROXY"):
        env[name] = http
    for name in ("ALL_PROXY", "all_proxy", "FTP_PROXY", "ftp_proxy"):
        env[name] = socks
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env["RSYNC_PROXY"] = f"127.0.0.1:{net.http_port}"
    env["NODE_USE_ENV_PROXY"] = "1"
    non_proxy = "|".join(n for n in ("localhost", "127.*", "[::1]") if n.strip("[]*").rstrip(".") not in host_loopback)
    env["JAVA_TOOL_OPTIONS"] = " ".join((
        f"-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort={net.http_port}",
        f"-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={net.http_port}",
        f"-Dhttp.nonProxyHosts={non_proxy}" if non_proxy else "",
        "-Djdk.http.auth.tunneling.disabledSchemes=",
    )).strip()
    env["GIT_SSH_COMMAND"] = (f"ssh -o ProxyCommand='{sys.executable} -S -I {_connect_script()} %h %p' "
                              "-o ServerAliveInterval=30")
    env["CORRAL_PROXY"] = http
    return env


def resolv_conf(net) -> str:
    if net.transparent:
        return "# corral: names the policy allows resolve here; nothing is forwarded\nnameserver 127.0.0.1\n"
    return "# corral: no DNS inside the sandbox; use the proxy (HTTP_PROXY / ALL_PROXY)\nnameserver 127.0.0.1\n"


def _connect_script() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "proxy", "connect_stdio.py")


def _allowed_loopback(allowed) -> set[str]:
    from ..proxy.addresses import classify, parse_ip

    out = set()
    for entry in allowed:
        host = entry
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        host = host.split("/", 1)[0].lower().rstrip(".")
        if host == "localhost":
            out.add("localhost")
            continue
        ip = parse_ip(host)
        if ip is not None and classify(ip) == "loopback":
            out.add("::1" if ip.version == 6 else "127.0.0.1")
    return out
