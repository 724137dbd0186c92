"""What a run without network sees: proxy variables and a resolver that point at corral's
refusing responder (sandbox/offline.py), an nsswitch.conf without host services. Pure."""

from __future__ import annotations

HTTP_PORT = 3128
DNS_PORT = 53

#: Clients that retry a failed connection with growing pauses whatever the failure, told not to
#: (nothing changes during a run without network). Set only when the launcher did not set them.
NO_RETRY_ENV = (
    ("PIP_RETRIES", "0"),  # pip: urllib3 retries connect and proxy errors 5 times (7.5 s of pauses)
)
#: The launcher's proxy settings that cannot work without network (and may carry credentials).
LAUNCHER_PROXY_VARS = ("ALL_PROXY", "all_proxy", "FTP_PROXY", "ftp_proxy", "GRPC_PROXY", "grpc_proxy",
                       "DOCKER_HTTP_PROXY", "DOCKER_HTTPS_PROXY", "RSYNC_PROXY")


def environment(environ: dict[str, str]) -> dict[str, str]:
    """Variables set inside: the proxy variables point at the refusing port, the launcher's
    other proxy settings go (`LAUNCHER_PROXY_VARS`), and retry counts drop to 0 unless the
    launcher chose one. Returns what to set."""
    url = f"http://127.0.0.1:{HTTP_PORT}"
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    env["NODE_USE_ENV_PROXY"] = "1"
    for name, value in NO_RETRY_ENV:
        if name not in environ:
            env[name] = value
    return env


def resolv_conf() -> str:
    return ("# corral: no network for this run; every name is refused here (NXDOMAIN), nothing is forwarded\n"
            "nameserver 127.0.0.1\noptions ndots:0 attempts:1\n")


def nsswitch_conf(text: str | None, dns: bool = True) -> str:
    """The host's nsswitch.conf with `hosts: files dns` (/etc/hosts, then corral's resolver),
    or `hosts: files` without a responder; never nss-resolve, mdns or myhostname, which might
    reach host services."""
    lines = (text or "").splitlines()
    out = [line for line in lines if not line.lstrip().startswith("hosts:")]
    out.append("hosts: files dns" if dns else "hosts: files")
    return "\n".join(out) + "\n"
