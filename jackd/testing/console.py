"""
Run ``twistd -n jack-console`` as a subprocess, the way an operator starts
it, for end-to-end tests::

    console = ConsoleProcess(jack.address, args=["--page-size", "3"])
    console.start()
    self.addCleanup(console.stop)
    urlopen(console.url + "producers")

These calls block; they are meant for tests.
"""

import http.client

from jackd.testing.daemon import TWISTD, TwistdProcess, free_port


class ConsoleProcess(TwistdProcess):
    """
    One ``twistd -n jack-console --console-port PORT --jack-addr ADDRESS``,
    serving once it answers for its stylesheet (which needs no answer from
    Jack).

    @ivar port: the HTTP port (a free one).
    @ivar url: ``http://127.0.0.1:PORT/``.
    """

    name = "jack-console"

    def __init__(self, jack_address, args=()):
        super().__init__(args)
        self.jack_address = jack_address
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"

    @property
    def command(self):
        return [
            *TWISTD, "-n", "--pidfile=", "jack-console",
            "--console-port", str(self.port), "--jack-addr", self.jack_address,
            *self.args,
        ]

    def _ready(self, timeout):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", "/static/console.css")
            status = connection.getresponse().status
        except OSError as error:
            return False, str(error)
        finally:
            connection.close()
        return status == 200, f"HTTP {status}"
