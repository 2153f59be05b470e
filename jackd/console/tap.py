"""
``twistd jack-console``: its options and the service it runs.

Every setting is a command-line option and an environment variable, as for
``twistd jack`` (``--console-port`` / ``CONSOLE_PORT``); the option beats the
environment, which beats the default.
"""

import ipaddress
import re


from jackd.console.guard import host_names
from jackd.errors import ConfigError
from jackd.tap import (
    Setting,
    SettingsOptions,
    _ip_address,
    _port,
    _positive_duration,
    check_port_free,
)

# gRPC target schemes (gRPC's naming doc): a target with one goes to gRPC as is.
GRPC_SCHEMES = ("dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock")
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _page_size(text):
    if not text.strip().isdigit() or not 1 <= int(text) <= 1000:
        raise ValueError(f"{text!r} is not a whole number from 1 to 1000")
    return int(text)


def _address(text):
    """
    Jack's gRPC address: C{host:port} (a name, an IPv4 address or a
    bracketed IPv6 address; port 1 to 65535), or a target with a gRPC scheme
    (C{dns:///jack:50051}, C{unix:/run/jack.sock}, C{ipv4:}, C{ipv6:}, ...).
    """
    text = text.strip()
    if not text:
        raise ValueError("must name Jack's gRPC address (host:port)")
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in GRPC_SCHEMES:
        if not rest.strip("/"):
            raise ValueError(f"{text!r} names no address after {scheme}:")
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not _host(host) or not _grpc_port(port):
        raise ValueError(
            f"{text!r} is not host:port (port 1 to 65535) nor a gRPC target with one of "
            f"the schemes {', '.join(s + ':' for s in GRPC_SCHEMES)}"
        )
    return text


def _host(text):
    if text.startswith("[") and text.endswith("]"):
        try:
            return ipaddress.IPv6Address(text[1:-1]) is not None
        except ValueError:
            return False
    return len(text) <= 254 and _HOST_NAME.fullmatch(text) is not None


def _grpc_port(text):
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


SETTINGS = (
    Setting("console-port", "CONSOLE_PORT", "8080", _port,
            "TCP port of the web console."),
    Setting("console-interface", "CONSOLE_INTERFACE", "127.0.0.1", _ip_address,
            "Address the web console listens on (0.0.0.0 or :: for every "
            "interface)."),
    Setting("allowed-hosts", "CONSOLE_ALLOWED_HOSTS", "", host_names,
            "Host names (or addresses) the console answers to besides "
            "localhost, loopback addresses and CONSOLE_INTERFACE, separated "
            "by commas: the names browsers use to reach it (through a "
            "reverse proxy, say). Requests for other names get 400."),
    Setting("jack-addr", "JACK_ADDR", "localhost:50051", _address,
            "gRPC address of the Jack daemon whose AdminService the console "
            "uses: host:port, or a gRPC target such as dns:///host:port or "
            "unix:/path."),
    Setting("page-size", "CONSOLE_PAGE_SIZE", "50", _page_size,
            "Producers or job types on one page of a list."),
    Setting("call-timeout", "CONSOLE_CALL_TIMEOUT", "10s", _positive_duration,
            "How long the console waits for Jack to answer one call."),
)


class Options(SettingsOptions):
    """
    ``twistd jack-console``'s options.

    @param environ: the environment to read defaults from (C{os.environ}).
    """

    settings = SETTINGS
    longdesc = (
        "Jack Console: a web UI for Jack's producers and job types, talking "
        "to a Jack daemon over gRPC (jack.AdminService).  Every option can "
        "also be set with the environment variable named in its help; the "
        "option wins over the variable."
    )


def build_service(options, reactor):
    """
    The console's service for parsed C{options}.

    @raise ConfigError: the configuration cannot work (the port is taken,
        the interface is not an address of this machine).
    """
    from jackd.console.client import AdminClient
    from jackd.console.guard import Guard
    from jackd.console.service import ConsoleService
    from jackd.console.web import Console

    try:
        check_port_free(options["console-port"], options["console-interface"])
    except ConfigError as error:
        raise ConfigError(f"web console (CONSOLE_INTERFACE, CONSOLE_PORT): {error}") from None
    client = AdminClient(options["jack-addr"], options["call-timeout"])
    guard = Guard(options["console-interface"], options["allowed-hosts"])
    console = Console(client, options["page-size"], guard)
    return ConsoleService(
        options["console-port"], options["console-interface"], client, console, reactor
    )


def makeService(options, reactor=None):
    """
    twistd's entry point: install the asyncio reactor (the gRPC client is
    grpc.aio, on its loop) and build the service.  A configuration that
    cannot work stops the start with one line.
    """
    from jackd.tap import install_reactor

    try:
        return build_service(options, reactor or install_reactor())
    except ConfigError as error:
        raise SystemExit(f"twistd jack-console: {error}") from None
