"""
``twistd jack-console``: its options and the service it runs.

Every setting is a command-line option and an environment variable, as for
``twistd jack`` (``--console-port`` / ``CONSOLE_PORT``); the option beats the
environment, which beats the default.
"""

import os
from typing import ClassVar

from twisted.python import usage

from jackd.errors import ConfigError
from jackd.tap import Setting, _ip_address, _port, _positive_duration, check_port_free


def _page_size(text):
    if not text.strip().isdigit() or not 1 <= int(text) <= 1000:
        raise ValueError(f"{text!r} is not a whole number from 1 to 1000")
    return int(text)


def _address(text):
    if not text.strip():
        raise ValueError("must name Jack's gRPC address (host:port)")
    return text.strip()


SETTINGS = (
    Setting("console-port", "CONSOLE_PORT", "8080", _port,
            "TCP port of the web console."),
    Setting("console-interface", "CONSOLE_INTERFACE", "127.0.0.1", _ip_address,
            "Address the web console listens on (0.0.0.0 or :: for every "
            "interface)."),
    Setting("jack-addr", "JACK_ADDR", "localhost:50051", _address,
            "gRPC address of the Jack daemon whose AdminService the console "
            "uses (host:port, or any gRPC target)."),
    Setting("page-size", "CONSOLE_PAGE_SIZE", "50", _page_size,
            "Producers or job types on one page of a list."),
    Setting("call-timeout", "CONSOLE_CALL_TIMEOUT", "10s", _positive_duration,
            "How long the console waits for Jack to answer one call."),
)


class Options(usage.Options):
    """
    @param environ: the environment to read defaults from (C{os.environ}).
    """

    synopsis = "[options]"
    longdesc = (
        "Jack Console: a web UI for Jack's producers and job types, talking "
        "to a Jack daemon over gRPC (jack.AdminService).  Every option can "
        "also be set with the environment variable named in its help; the "
        "option wins over the variable."
    )
    optParameters: ClassVar[list] = [
        [s.option, None, None, f"{s.help} [env {s.env}; default: {s.default or 'unset'}]"]
        for s in SETTINGS
    ]

    def __init__(self, environ=None):
        super().__init__()
        self._environ = os.environ if environ is None else environ

    def postOptions(self):
        for setting in SETTINGS:
            text, source = self[setting.option], f"--{setting.option}"
            if text is None:
                text, source = self._environ.get(setting.env, ""), setting.env
                if not text:
                    text, source = setting.default, f"default of {setting.env}"
            try:
                self[setting.option] = setting.convert(text)
            except ValueError as error:
                raise usage.UsageError(f"{source}: {error}") from None


def build_service(options, reactor):
    """
    The console's service for parsed C{options}.

    @raise ConfigError: the configuration cannot work (the port is taken).
    """
    from jackd.console.client import AdminClient
    from jackd.console.service import ConsoleService
    from jackd.console.web import Console

    try:
        check_port_free(options["console-port"])
    except ConfigError as error:
        raise ConfigError(f"web console (CONSOLE_PORT): {error}") from None
    client = AdminClient(options["jack-addr"], options["call-timeout"])
    console = Console(client, options["page-size"])
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
