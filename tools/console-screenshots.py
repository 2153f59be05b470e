#!/usr/bin/env python3
"""
Remake the README's screenshots of the Jack Console (docs/console-*.png):
starts a Jack and a console from this checkout, registers sample producers
and job types, and photographs the pages in headless chromium.

    PYTHONPATH=. python tools/console-screenshots.py

Needs chromium and chromium-driver (Debian) and selenium.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jack import admin_pb2, admin_pb2_grpc  # noqa: E402
from jack.job_pb2 import Queue  # noqa: E402
from jackd.testing.browser import save_screenshot, start_browser  # noqa: E402
from jackd.testing.console import ConsoleProcess  # noqa: E402
from jackd.testing.daemon import JackProcess  # noqa: E402

PRODUCERS = [
    ("Billing", "Invoices, payment reminders and refunds", [
        ("charge-card", Queue.QUEUE_IMMEDIATE, 5, "Charge the saved card for an order"),
        ("send-invoice", Queue.QUEUE_HIGH, 3, "Render an invoice and email it"),
        ("payment-reminder", Queue.QUEUE_MEDIUM, 3, "Remind after 14 days unpaid"),
        ("monthly-statement", Queue.QUEUE_LOW, 1, ""),
    ]),
    ("Notifications", "Push, SMS and email fan-out", []),
    ("Search indexer", "Keeps the product search index fresh", []),
    ("Warehouse", "", []),
]


def create_in_console(browser, console, name, description):
    """
    Create a producer through the console's form, as an operator does (its
    "Producer created" notice shows only then).

    @return: the producer's id and the URL of its page with the notice.
    """
    browser.get(console.url + "producers/new")
    browser.find_element("css selector", "#name").send_keys(name)
    browser.find_element("css selector", "#description").send_keys(description)
    browser.find_element("css selector", "form button[type=submit]").click()
    return browser.find_element("css selector", "#new-id").text, browser.current_url


def main():
    docs = ROOT / "docs"
    jack = JackProcess()
    jack.start()
    console = ConsoleProcess(jack.address)
    browser = None
    try:
        console.start()
        browser = start_browser()
        browser.set_window_size(1100, 700)
        admin = admin_pb2_grpc.AdminServiceStub(jack.channel())
        created_url = None
        for name, description, job_types in PRODUCERS:
            if created_url is None:
                producer_id, created_url = create_in_console(
                    browser, console, name, description
                )
            else:
                producer_id = admin.CreateProducer(
                    admin_pb2.CreateProducerRequest(name=name, description=description)
                ).producer.producer_id
            for job_type, queue, retries, text in job_types:
                admin.CreateJobType(admin_pb2.CreateJobTypeRequest(
                    producer_id=producer_id, name=job_type, queue=queue,
                    max_retries=retries, description=text,
                ))
        browser.get(console.url + "producers")
        print(save_screenshot(browser, "console-producers", docs))
        browser.get(created_url)
        print(save_screenshot(browser, "console-producer", docs))
    finally:
        if browser is not None:
            browser.quit()
        console.stop()
        jack.stop()


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
