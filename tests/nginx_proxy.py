"""Runs Debian's nginx with the shipped proxy config (nginx/datatracker.conf.template) in front
of API hosts, on a free 127.0.0.1 port, as compose's `proxy` service runs the official image."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api_server import free_port

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "nginx" / "datatracker.conf.template"
NGINX = Path("/usr/sbin/nginx")
# What the test's nginx.conf logs of each request, `|`-separated: a retried request's
# upstream_addr lists every host tried (`a, b`); then the API's Cache-Control, the time.
LOG_FORMAT = (
    "$request_uri|$upstream_addr|$upstream_status|$upstream_cache_status|$status"
    "|$upstream_http_cache_control|$msec"
)
# The test's main file; the shipped template is included in its http block, as the official
# image includes conf.d. Temporary files under the prefix, not the package's /var/lib/nginx.
MAIN_CONF = """\
worker_processes 1;
pid nginx.pid;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '{log_format}';
    access_log logs/access.log upstreams;
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    include datatracker.conf;
    # Answered by nginx itself: Proxy.log's mark (one worker: logged after every request
    # answered before it).
    server {{
        listen 127.0.0.1:{mark_port};
        return 204;
    }}
}}
"""
MARK = "/logged-so-far"


def placeholders(template: str) -> set[str]:
    """The `${NAME}` variables a template uses (what envsubst fills in)."""
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", template))


def fill(template: str, values: dict[str, str]) -> str:
    """The template with its `${NAME}` variables replaced, as the official image's envsubst
    does; every one must be given."""
    missing = placeholders(template) - set(values)
    assert not missing, f"no value for {sorted(missing)}"
    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: values[m[1]], template)


def nginx() -> Path:
    """Debian's nginx; a CI run fails without it (.ci/run installs it), others skip."""
    if NGINX.exists():
        return NGINX
    message = f"{NGINX} is missing: apt-get install -y --no-install-recommends nginx"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Proxy:
    port: int
    prefix: Path
    mark_port: int
    marks: int = 0  # requests to the mark server so far

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> list[list[str]]:
        """The access log of every request answered so far: per request, its fields of
        LOG_FORMAT. nginx writes a line once the answer is sent, so a client may read its
        answer before the line is written: a request to the mark server is waited for first."""
        httpx.get(f"http://127.0.0.1:{self.mark_port}{MARK}", timeout=5).raise_for_status()
        self.marks += 1
        for _ in range(200):
            text = (self.prefix / "logs" / "access.log").read_text()
            lines = [line.split("|") for line in text.splitlines()]
            if self.marks == sum(line[0] == MARK for line in lines):
                return [line for line in lines if line[0] != MARK]
            time.sleep(0.01)
        raise AssertionError("nginx did not log its mark within 2 s")


@contextlib.contextmanager
def nginx_proxy(api_ports: list[int]) -> Iterator[Proxy]:
    """nginx in the foreground (`daemon off`) with the shipped config, proxying to the API hosts
    on `api_ports`; stopped (SIGQUIT, then waited for) on exit."""
    executable = nginx()
    # Readable by nginx's workers, which run as `nobody` when started as root.
    prefix = Path(tempfile.mkdtemp(prefix="datatracker-nginx-"))
    prefix.chmod(0o755)
    for directory in ("logs", "temp"):
        (prefix / directory).mkdir(mode=0o755)
    port, mark_port = free_port(), free_port()
    servers = prefix / "api-servers.conf"
    servers.write_text("".join(f"server 127.0.0.1:{api_port};\n" for api_port in api_ports))
    values = {
        "PROXY_PORT": f"127.0.0.1:{port}",
        "PROXY_CACHE_DIR": str(prefix / "cache"),
        "PROXY_API_SERVERS": str(servers),
    }
    (prefix / "datatracker.conf").write_text(fill(TEMPLATE.read_text(), values))
    main = MAIN_CONF.format(log_format=LOG_FORMAT, mark_port=mark_port)
    (prefix / "nginx.conf").write_text(main)
    command = [str(executable), "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    errors = prefix / "logs" / "error.log"
    command += ["-e", str(errors), "-g", "daemon off;"]
    with (prefix / "logs" / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        until_listening(port, process, errors)
        yield Proxy(port, prefix, mark_port)
    finally:
        if process.poll() is None:
            process.terminate()  # nginx's fast shutdown
        process.wait(timeout=15)
        shutil.rmtree(prefix, ignore_errors=True)


def until_listening(port: int, process: subprocess.Popen[bytes], errors: Path) -> None:
    """Wait until nginx accepts connections on `port`; its error log if it stopped."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx stopped: {errors.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("nginx did not listen within 10 s")
