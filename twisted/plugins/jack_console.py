from twisted.application.service import ServiceMaker

jack_console = ServiceMaker(
    "jack-console",
    "jackd.console.tap",
    "Jack Console: a web UI for Jack's producers and job types",
    "jack-console",
)
