"""
The Jack Console: a web UI for operators over ``jack.AdminService``.

``twistd jack-console`` (``jackd.console.tap``) serves server-rendered HTML
pages (no JavaScript) for listing and creating producers and job types, and
talks to a Jack daemon only through its gRPC admin API.
"""
