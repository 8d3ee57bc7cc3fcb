"""DATABASE_URL checked at start as libpq checks it when it connects, and refused in words
that never quote it.

libpq parses a connection string when asked (psycopg's `conninfo_to_dict`) but checks most
values (a port, an sslmode, a timeout) only when it connects, and both its parse errors and
its connection errors quote what they read: any part of a malformed string may be the
password (`S3cretPW%`, a password with an unencoded `@` or `/` read as a host or a port, a
`user=` with no value that takes `password=…` as its value). So every value is checked here,
libpq's own parse errors are shown with their quoted parts masked, and no message of ours
shows a value.
"""

import ipaddress
import re

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

KEYWORDS = frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())
# Options whose value is a secret: never looked into.
SECRETS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)

# Values libpq accepts (PostgreSQL's documentation, "Parameter Key Words"), where it checks.
CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
    "ssl_min_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "ssl_max_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "replication": ("true", "on", "yes", "1", "false", "off", "no", "0", "database"),
}
WHOLE_NUMBERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
AUTH_METHODS = ("password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none")

_WHOLE_NUMBER = re.compile(r"\s*[+-]?[0-9]{1,9}\s*", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
# A host name, an IPv4 or IPv6 address (an IPv6 zone too), or a socket directory.
_HOST = re.compile(r"[A-Za-z0-9._:%-]+|/.*", re.ASCII | re.DOTALL)
# A value that starts with an option: the option before it had no value, and took this one.
_OPTION_AS_VALUE = re.compile(r"\s*([A-Za-z_]+)\s*=")

# libpq's messages for a string it cannot parse (PostgreSQL's fe-connect.c); %s and %c are
# what it read, shown as ***.
PARSE_ERRORS = (
    'missing "=" after "%s" in connection info string',
    "unterminated quoted string in connection info string",
    'invalid connection option "%s"',
    'invalid URI propagated to internal parser routine: "%s"',
    'end of string reached when looking for matching "]" in IPv6 host address in URI: "%s"',
    'IPv6 host address may not be empty in URI: "%s"',
    'unexpected character "%c" at position %d in URI (expected ":" or "/"): "%s"',
    'extra key/value separator "=" in URI query parameter: "%s"',
    'missing key/value separator "=" in URI query parameter: "%s"',
    'invalid URI query parameter: "%s"',
    'invalid percent-encoded token: "%s"',
    'unexpected spaces found in "%s", use percent-encoded spaces (%%20) instead',
    'forbidden value %%00 in percent-encoded value: "%s"',
)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(%[scd%])", template)
    wildcards = {"%s": "(?:.*)", "%c": "(?:.)", "%d": "([0-9]+)", "%%": "%"}
    return re.compile("".join(wildcards.get(p, re.escape(p)) for p in parts), re.DOTALL)


_PARSE_ERRORS = [(_pattern(t), t) for t in PARSE_ERRORS]


def check_conninfo(conninfo: str) -> None:
    """Raise ValueError, in words that quote nothing of `conninfo`, when libpq would refuse
    it on parsing or connecting."""
    try:
        params = conninfo_to_dict(conninfo)
    except (psycopg.ProgrammingError, UnicodeError) as error:
        raise ValueError(masked(str(error).strip())) from None
    problem = first_problem({key: str(value) for key, value in params.items()})
    if problem:
        raise ValueError(problem)


def masked(message: str) -> str:
    """libpq's parse error with what it quotes of the string as ***; any other message as
    one that says only that the string is malformed."""
    for pattern, template in _PARSE_ERRORS:
        if match := pattern.fullmatch(message):
            shown = template.replace("%s", "***").replace("%c", "*").replace("%%", "%")
            return shown.replace("%d", match[1]) if match.groups() else shown
    return "not a libpq URL or key=value string"


def first_problem(params: dict[str, str]) -> str | None:
    """What libpq would refuse in these parsed options when connecting, if anything."""
    for key, value in params.items():
        if key in SECRETS:
            continue
        taken = _OPTION_AS_VALUE.match(value)
        if taken and taken[1] in KEYWORDS:
            return f"{key} has no value and took the next option as one (write {key}='')"
        if key in CHOICES and value not in CHOICES[key]:
            return f"{key} must be one of {', '.join(CHOICES[key])}"
        if key in WHOLE_NUMBERS and not _WHOLE_NUMBER.fullmatch(value):
            return f"{key} must be a whole number"
    if "require_auth" in params and not _auth_methods(params["require_auth"]):
        return f"require_auth must be a list of {', '.join(AUTH_METHODS)}, each or each with !"
    return _address_problem(params)


def _auth_methods(value: str) -> bool:
    methods = value.split(",")
    negated = {method.startswith("!") for method in methods}
    return len(negated) == 1 and all(m.removeprefix("!") in AUTH_METHODS for m in methods)


def _address_problem(params: dict[str, str]) -> str | None:
    hosts = params.get("host", "").split(",")
    addresses = params.get("hostaddr", "").split(",")
    ports = params.get("port", "").split(",")
    if not all(host == "" or _HOST.fullmatch(host) for host in hosts):
        return (
            "host is no host name, address or socket directory"
            " (in a URL, write @ / ? # in the user name or password as %40 %2F %3F %23)"
        )
    if not all(address == "" or _ip_address(address) for address in addresses):
        return "hostaddr must be an IP address"
    if not all(port == "" or (_PORT.fullmatch(port) and 1 <= int(port) <= 65535) for port in ports):
        return "port must be a number from 1 to 65535 (in a URL, write / in the password as %2F)"
    if "host" in params and "hostaddr" in params and len(hosts) != len(addresses):
        return f"host names {len(hosts)} hosts and hostaddr {len(addresses)} addresses"
    count = max(len(hosts), len(addresses))
    if len(ports) not in (1, count):
        return f"port names {len(ports)} ports for {count} hosts"
    return None


def _ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
