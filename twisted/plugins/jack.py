from twisted.application.service import ServiceMaker

jack = ServiceMaker(
    "jack", "jackd.tap", "Jack: the gRPC front door for background jobs", "jack"
)
