# twistd -ny jackd.tac: Jack configured from the environment alone (the
# same settings as `twistd jack`, see `twistd jack --help`).
from jackd.tap import install_reactor

install_reactor()  # before anything imports the default reactor

from twisted.application.service import Application  # noqa: E402

from jackd.tap import Options, makeService  # noqa: E402

options = Options()
options.parseOptions([])
application = Application("jack")
makeService(options).setServiceParent(application)
