"""
The console's HTML, built with ``twisted.web.template`` tags: every string
put into a page is escaped by the flattener, so a producer named
``<script>`` shows as text.  No JavaScript anywhere; the layout is plain
HTML with one stylesheet (``jackd.console.style``).
"""

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from twisted.python.failure import Failure
from twisted.web.template import Tag, flattenString, tags

from jack.job_pb2 import Queue

# The four queues: enum name, label, how soon a job on it is picked up.
QUEUES = (
    ("QUEUE_IMMEDIATE", "Immediate", "5 s"),
    ("QUEUE_HIGH", "High", "15 s"),
    ("QUEUE_MEDIUM", "Medium", "1 min"),
    ("QUEUE_LOW", "Low", "5 min"),
)
DEFAULT_QUEUE = "QUEUE_MEDIUM"
_QUEUE_INFO = {Queue.Value(name): (label, sla) for name, label, sla in QUEUES}

CSRF_FIELD = "csrf_token"


def producer_url(producer_id, **query):
    url = "/producers/" + quote(producer_id, safe="")
    return url + ("?" + urlencode(query) if query else "")


def new_job_type_url(producer_id):
    return producer_url(producer_id) + "/job-types/new"


def job_types_url(producer_id):
    return producer_url(producer_id) + "/job-types"


def render(tag) -> bytes:
    """C{tag} flattened to bytes (synchronous: the pages hold no Deferreds)."""
    box = []
    flattenString(None, tag).addBoth(box.append)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def document(title, content, jack_address, crumbs=()) -> bytes:
    """
    A whole page.

    @param crumbs: C{(text, url)} pairs leading to this page (the last
        one's url may be C{None}).
    """
    trail = []
    for text, url in crumbs:
        if trail:
            trail.append(tags.span("/", class_="sep", **{"aria-hidden": "true"}))
        trail.append(tags.a(text, href=url) if url else tags.span(text, **{"aria-current": "page"}))
    page = tags.html(lang="en")(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(f"{title} · Jack Console"),
            tags.link(rel="stylesheet", href="/static/console.css"),
        ),
        tags.body(
            tags.header(class_="topbar")(
                tags.div(class_="wrap bar")(
                    tags.a("Jack Console", href="/producers", class_="brand"),
                    tags.span(class_="daemon")("Jack at ", tags.code(jack_address)),
                )
            ),
            Tag("main", attributes={"class": "wrap"})(
                tags.nav(class_="crumbs", **{"aria-label": "Breadcrumb"})(trail)
                if trail else "",
                content,
            ),
        ),
    )
    return b"<!DOCTYPE html>\n" + render(page)


def _created(timestamp):
    moment = datetime.fromtimestamp(timestamp.seconds, UTC)
    return tags.time(moment.strftime("%Y-%m-%d %H:%M UTC"), datetime=moment.isoformat())


def _head(title, *actions):
    return tags.div(class_="page-head")(tags.h1(title), *actions)


def _button_link(text, url):
    return tags.a(text, href=url, class_="button")


def _pager(first_url, next_url, is_first):
    links = []
    if not is_first:
        links.append(tags.a("« First page", href=first_url))
    if next_url:
        links.append(tags.a("Next page »", href=next_url, rel="next", class_="next"))
    return tags.nav(class_="pager", **{"aria-label": "Pages"})(links) if links else ""


def _cell(label, *content, **attributes):
    return tags.td(*content, **{"data-label": label}, **attributes)


def _description(text):
    return text if text else tags.span("—", class_="muted")


def producers_page(producers, next_token, is_first, jack_address):
    """The list of producers (one page of it)."""
    if producers:
        rows = [
            tags.tr(
                _cell("Name", tags.a(p.name, href=producer_url(p.producer_id)), class_="name"),
                _cell("Producer id", tags.code(p.producer_id)),
                _cell("Description", _description(p.description), class_="desc"),
                _cell("Created", _created(p.created_at)),
            )
            for p in producers
        ]
        body = tags.div(class_="table-wrap")(tags.table(class_="list", id="producers")(
            tags.thead(tags.tr(
                tags.th("Name", scope="col"), tags.th("Producer id", scope="col"),
                tags.th("Description", scope="col"), tags.th("Created", scope="col"),
            )),
            tags.tbody(rows),
        ))
    elif is_first:
        body = tags.p(class_="empty")(
            "No producers yet. ", tags.a("Create the first one", href="/producers/new"), "."
        )
    else:
        body = tags.p("No more producers.", class_="empty")
    next_url = "/producers?" + urlencode({"page_token": next_token}) if next_token else None
    content = [
        _head("Producers", _button_link("New producer", "/producers/new")),
        tags.p(
            "Applications enqueue jobs as a producer, naming one of its job types.",
            class_="lead",
        ),
        body,
        _pager("/producers", next_url, is_first),
    ]
    return document("Producers", content, jack_address)


def _created_notice(producer, created_job_type):
    if created_job_type is not None:
        return tags.section(class_="notice", role="status", id="created")(
            tags.h2("Job type created"),
            tags.p("Enqueue its jobs with these two values:"),
            tags.dl(class_="ids")(
                tags.dt("producer_id"),
                tags.dd(tags.code(producer.producer_id, class_="new-id")),
                tags.dt("job_type"),
                tags.dd(tags.code(created_job_type, class_="new-id", id="new-id")),
            ),
        )
    return tags.section(class_="notice", role="status", id="created")(
        tags.h2("Producer created"),
        tags.p("Its producer id, for the application's configuration:"),
        tags.code(producer.producer_id, class_="new-id", id="new-id"),
    )


def producer_page(producer, job_types, next_token, is_first, jack_address,
                  created=False, created_job_type=None):
    """
    One producer and (one page of) its job types.

    @param created: show the "producer created" notice with its id.
    @param created_job_type: the name of a job type just created, for the
        "job type created" notice, or C{None}.
    """
    if job_types:
        rows = []
        for job_type in job_types:
            label, sla = _QUEUE_INFO.get(job_type.queue, (str(job_type.queue), "?"))
            rows.append(tags.tr(
                _cell("Name", tags.code(job_type.name), class_="name"),
                _cell("Queue", tags.span(label, class_=f"queue q-{label.lower()}")),
                _cell("Picked up within", sla),
                _cell("Max retries", str(job_type.max_retries), class_="num"),
                _cell("Description", _description(job_type.description), class_="desc"),
                _cell("Created", _created(job_type.created_at)),
            ))
        table = tags.div(class_="table-wrap")(tags.table(class_="list", id="job-types")(
            tags.thead(tags.tr(
                tags.th("Name", scope="col"), tags.th("Queue", scope="col"),
                tags.th("Picked up within", scope="col"),
                tags.th("Max retries", scope="col", class_="num"),
                tags.th("Description", scope="col"), tags.th("Created", scope="col"),
            )),
            tags.tbody(rows),
        ))
    elif is_first:
        table = tags.p(class_="empty")(
            "No job types yet. ",
            tags.a("Create the first one", href=new_job_type_url(producer.producer_id)),
            ".",
        )
    else:
        table = tags.p("No more job types.", class_="empty")
    next_url = producer_url(producer.producer_id, page_token=next_token) if next_token else None
    content = [
        _created_notice(producer, created_job_type)
        if created or created_job_type is not None else "",
        _head(producer.name, _button_link("New job type", new_job_type_url(producer.producer_id))),
        tags.dl(class_="facts")(
            tags.div(tags.dt("Producer id"), tags.dd(tags.code(producer.producer_id))),
            tags.div(tags.dt("Created"), tags.dd(_created(producer.created_at))),
            tags.div(tags.dt("Description"), tags.dd(_description(producer.description)),
                     class_="wide"),
        ),
        tags.h2("Job types"),
        table,
        _pager(producer_url(producer.producer_id), next_url, is_first),
    ]
    return document(
        producer.name, content, jack_address,
        crumbs=[("Producers", "/producers"), (producer.name, None)],
    )


def _error_box(problem):
    if problem is None:
        return ""
    return tags.div(class_="error", role="alert", id="form-error")(
        tags.strong(problem.title), tags.p(problem.message)
    )


def _field(name, label, control, help_text=None, optional=False, problem=None):
    """A label, its control and a help line; marked invalid when C{problem} names it."""
    if problem is not None and problem.field == name:
        control.attributes["aria-invalid"] = "true"
    if help_text:
        control.attributes["aria-describedby"] = f"{name}-help"
    return tags.div(class_="field")(
        tags.label(for_=name)(label, tags.span(" optional", class_="optional") if optional else ""),
        control,
        tags.p(help_text, class_="help", id=f"{name}-help") if help_text else "",
    )


def _form(action, token, problem, fields, submit, cancel_url):
    return tags.form(method="post", action=action, class_="card", **{"accept-charset": "utf-8"})(
        tags.input(type="hidden", name=CSRF_FIELD, value=token),
        _error_box(problem),
        fields,
        tags.div(class_="actions")(
            tags.button(submit, type="submit"),
            tags.a("Cancel", href=cancel_url, class_="cancel"),
        ),
    )


def new_producer_page(token, jack_address, values=None, problem=None):
    """
    The "create producer" form.

    @param token: the CSRF token for the hidden field.
    @param values: what the operator typed, to fill the form again.
    @param problem: a ``jackd.console.web.Problem`` to show, or C{None}.
    """
    values = values or {}
    fields = [
        _field(
            "name", "Name",
            tags.input(id="name", name="name", type="text", required="", autofocus="",
                       autocomplete="off", value=values.get("name", "")),
            "Shown to people: unique, at most 128 bytes. Jack makes up the id.",
            problem=problem,
        ),
        _field(
            "description", "Description",
            tags.textarea(values.get("description", ""), id="description",
                          name="description", rows="3"),
            "Who owns it, what it enqueues.",
            optional=True, problem=problem,
        ),
    ]
    content = [
        _head("New producer"),
        _form("/producers", token, problem, fields, "Create producer", "/producers"),
    ]
    return document(
        "New producer", content, jack_address,
        crumbs=[("Producers", "/producers"), ("New producer", None)],
    )


def new_job_type_page(producer, token, jack_address, values=None, problem=None):
    """
    The "create job type" form for C{producer}: name, queue (the four, each
    with how soon its jobs are picked up), max retries, description.
    """
    values = values or {}
    chosen = values.get("queue", DEFAULT_QUEUE)
    choices = []
    for name, label, sla in QUEUES:
        radio = tags.input(type="radio", name="queue", value=name, id=f"queue-{name}")
        if name == chosen:
            radio.attributes["checked"] = ""
        choices.append(tags.label(class_="choice", for_=f"queue-{name}")(
            radio,
            tags.span(class_="choice-text")(
                tags.strong(label), " ", tags.small(f"picked up within {sla}")
            ),
        ))
    queue_box = tags.fieldset(class_="field queues")(tags.legend("Queue"), choices)
    if problem is not None and problem.field == "queue":
        queue_box.attributes["aria-invalid"] = "true"
    fields = [
        _field(
            "name", "Name",
            tags.input(id="name", name="name", type="text", required="", autofocus="",
                       autocomplete="off", value=values.get("name", "")),
            "What applications send as job_type: 1 to 128 of A-Z a-z 0-9 _ - . "
            "starting with a letter or digit; unique for this producer.",
            problem=problem,
        ),
        queue_box,
        _field(
            "max_retries", "Max retries",
            tags.input(id="max_retries", name="max_retries", type="number", min="0",
                       max="100", step="1", inputmode="numeric",
                       value=values.get("max_retries", "3")),
            "How many times a consumer retries a failed job: 0 to 100.",
            problem=problem,
        ),
        _field(
            "description", "Description",
            tags.textarea(values.get("description", ""), id="description",
                          name="description", rows="3"),
            optional=True, problem=problem,
        ),
    ]
    content = [
        _head("New job type"),
        tags.p(class_="lead")("For producer ", tags.strong(producer.name), " ",
                              tags.code(producer.producer_id)),
        _form(job_types_url(producer.producer_id), token, problem, fields,
              "Create job type", producer_url(producer.producer_id)),
    ]
    return document(
        "New job type", content, jack_address,
        crumbs=[("Producers", "/producers"),
                (producer.name, producer_url(producer.producer_id)),
                ("New job type", None)],
    )


def problem_page(problem, jack_address, links=(("Back to producers", "/producers"),)):
    """A page that only says what went wrong (an unknown producer, Jack down)."""
    content = [
        _head(problem.title),
        tags.div(class_="error", role="alert", id="page-error")(tags.p(problem.message)),
        tags.p(class_="actions")([tags.a(text, href=url) for text, url in links]),
    ]
    return document(problem.title, content, jack_address)
