"""
What Jack keeps in a GCS bucket: the object names of its records, the
records' JSON, and the snapshot of producers and job types they make.  See
L{jackd.storage.gcs} for how the store uses them.
"""

import base64
import bisect
import contextlib
import ipaddress
import re
import zlib
from collections import namedtuple
from urllib.parse import quote, unquote

from google.protobuf import json_format

from jack.admin_pb2 import JobType, Producer
from jackd.errors import ConfigError

PRODUCERS = "producers/"
CLAIMS = "producer-names/"
JOB_TYPES = "job-types/"
SUFFIX = ".json"

PRODUCER, CLAIM, JOB_TYPE = "producer", "claim", "job type"

MAX_KEY_BYTES = 1024  # GCS's limit on object names
MAX_PREFIX_BYTES = 200  # leaves room for the longest key Jack makes
MAX_PLAIN_SEGMENT = 128  # longer percent-encodings become base64url
ENCODED = "="  # starts a base64url segment; percent-encoding never makes it
MAX_RECORD_BYTES = 1024 * 1024  # larger objects are not records: not downloaded


def encode_name(text: str) -> str:
    """
    One segment of an object key for C{text} (a name or an id): the UTF-8
    bytes of every character but C{A-Z a-z 0-9 - _ ~} as C{%XX}; when that
    is longer than C{MAX_PLAIN_SEGMENT} bytes, C{=} and the base64url of
    the UTF-8 (no padding) instead.  No two texts share a segment, none
    holds C{/} or C{.}, and none is longer than 172 bytes for a text of at
    most 128 bytes.
    """
    plain = quote(text, safe="").replace(".", "%2E")
    if len(plain) <= MAX_PLAIN_SEGMENT:
        return plain
    encoded = base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=")
    return ENCODED + encoded.decode("ascii")


def decode_name(segment: str) -> str:
    """
    The text L{encode_name} made C{segment} of.

    @raise ValueError: no text makes C{segment}.
    """
    if segment.startswith(ENCODED):
        data = segment[len(ENCODED) :]
        try:
            padded = data + "=" * (-len(data) % 4)
            return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"not a segment Jack makes: {segment!r}") from error
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError as error:
        raise ValueError(f"not a segment Jack makes: {segment!r}") from error


def normalize_prefix(prefix: str) -> str:
    """C{prefix} as a folder: with a trailing C{/} unless empty."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def check_prefix(prefix: str) -> None:
    """
    @raise ConfigError: C{prefix} leaves too little of GCS's 1024 bytes
        of object name for Jack's keys.
    """
    size = len(normalize_prefix(prefix).encode("utf-8"))
    if size > MAX_PREFIX_BYTES:
        raise ConfigError(
            f"GCS_PREFIX is {size} bytes long; at most {MAX_PREFIX_BYTES} are allowed"
        )


_BUCKET_CHARACTERS = re.compile(r"[a-z0-9._-]+\Z")


def _bucket_problem(name: str):
    """What makes C{name} no GCS bucket name, or C{None}."""
    if name.startswith("gs://"):
        return "give the name alone, without gs://"
    if "/" in name:
        return "a bucket name holds no '/' (a folder goes in GCS_PREFIX)"
    if not _BUCKET_CHARACTERS.match(name):
        return "only lowercase letters, digits, '-', '_' and '.' are allowed"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "it must start and end with a letter or digit"
    parts = name.split(".")
    if len(parts) == 1 and not 3 <= len(name) <= 63:
        return "it must be 3 to 63 characters long (up to 222 with dots)"
    if len(parts) > 1:
        if not 3 <= len(name) <= 222:
            return "it must be 3 to 222 characters long"
        if not all(parts):
            return "dots must separate non-empty parts"
        if any(len(part) > 63 for part in parts):
            return "each dot-separated part is at most 63 characters long"
        with contextlib.suppress(ValueError):
            ipaddress.IPv4Address(name)
            return "it must not be an IP address"
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "GCS refuses names that start with 'goog' or contain 'google'"
    return None


def check_bucket(name: str) -> None:
    """
    @raise ConfigError: C{name} breaks GCS's rules for bucket names, so no
        bucket of that name can exist.
    """
    problem = _bucket_problem(name)
    if problem is not None:
        raise ConfigError(f"GCS_BUCKET {name!r} is not a bucket name: {problem}")


def check_emulator_host(value: str) -> None:
    """
    @param value: C{STORAGE_EMULATOR_HOST} (empty: unset).
    @raise ConfigError: the client library cannot use it (it takes a URL,
        scheme included).
    """
    if not value:
        return
    scheme, found, _ = value.partition("://")
    if not found:
        raise ConfigError(
            f"STORAGE_EMULATOR_HOST={value!r} lacks the scheme the client library "
            f"needs: use http://{value}"
        )
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"STORAGE_EMULATOR_HOST={value!r}: the scheme must be http:// or https://"
        )


def to_json(message, every_field=True) -> bytes:
    """
    C{message} in protobuf's JSON mapping, indented, UTF-8; with
    C{every_field}, fields at their default value are written too, so an
    operator sees them all.
    """
    text = json_format.MessageToJson(
        message,
        indent=2,
        ensure_ascii=False,
        always_print_fields_with_no_presence=every_field,
    )
    return (text + "\n").encode("utf-8")


def too_long(key: str) -> bool:
    """Whether C{key} is longer than GCS allows an object name to be."""
    return len(key.encode("utf-8")) > MAX_KEY_BYTES


class Layout:
    """
    Where each record lives under a prefix.
    """

    def __init__(self, prefix: str):
        self.prefix = normalize_prefix(prefix)

    def producer(self, producer_id: str) -> str:
        return f"{self.prefix}{PRODUCERS}{encode_name(producer_id)}{SUFFIX}"

    def claim(self, name: str) -> str:
        return f"{self.prefix}{CLAIMS}{encode_name(name)}{SUFFIX}"

    def job_type(self, producer_id: str, name: str) -> str:
        return (
            f"{self.prefix}{JOB_TYPES}{encode_name(producer_id)}/"
            f"{encode_name(name)}{SUFFIX}"
        )

    def kind(self, key: str):
        """
        @return: L{PRODUCER}, L{CLAIM} or L{JOB_TYPE} for a key of that
            shape, C{None} for any other object under the prefix.
        """
        if not (key.startswith(self.prefix) and key.endswith(SUFFIX)):
            return None
        rest = key[len(self.prefix) : -len(SUFFIX)]
        for kind, folder, slashes in (
            (PRODUCER, PRODUCERS, 0),
            (CLAIM, CLAIMS, 0),
            (JOB_TYPE, JOB_TYPES, 1),
        ):
            if rest.startswith(folder) and rest[len(folder) :].count("/") == slashes:
                return kind
        return None

    def key_of(self, kind, record) -> str:
        """The key at which C{record} of C{kind} belongs."""
        if kind == PRODUCER:
            return self.producer(record.producer_id)
        if kind == CLAIM:
            return self.claim(record.name)
        return self.job_type(record.producer_id, record.name)

    def parse(self, key: str, kind: str, data: bytes):
        """
        The record the object at C{key} holds.

        @raise ValueError: it is not JSON of a record of C{kind}, or not
            the record that belongs at C{key}.
        """
        record = JobType() if kind == JOB_TYPE else Producer()
        try:
            json_format.Parse(data.decode("utf-8"), record, ignore_unknown_fields=True)
        except (UnicodeDecodeError, json_format.ParseError) as error:
            raise ValueError(f"not a {kind} in protobuf's JSON mapping: {error}") from None
        expected = self.key_of(kind, record)
        if expected != key:
            raise ValueError(f"holds the {kind} that belongs at {expected}")
        return record


def gunzip(data: bytes, limit: int) -> bytes:
    """
    @raise ValueError: C{data} is not gzip, or holds more than C{limit}
        bytes.
    """
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = decompressor.decompress(data, limit + 1)
    except zlib.error as error:
        raise ValueError(f"is not gzip data ({error})") from None
    if len(plain) > limit:
        raise ValueError(f"decompresses to more than {limit} bytes")
    if not decompressor.eof:
        raise ValueError("is not complete gzip data")
    return plain


# One object of the bucket as the snapshot knows it: its generation, its
# kind, the record it holds (None when it holds none: problem says why).
# A generation of None makes the next refresh download it again (GCS
# refused it: that may pass without a new generation).
StoredObject = namedtuple("StoredObject", "generation kind record problem")


def _page(names, lookup, page_size, after):
    start = 0 if after is None else bisect.bisect_right(names, after)
    chosen = names[start : start + page_size]
    return [lookup(name) for name in chosen], start + page_size < len(names)


class Snapshot:
    """
    The producers and job types the objects of a bucket make, indexed for
    lookups and name-ordered paging.  Touched on the reactor thread only.
    """

    def __init__(self):
        self.producers = {}  # producer_id -> Producer
        self.ids_by_name = {}  # name -> producer_id
        self.names = []  # sorted producer names
        self.job_types = {}  # producer_id -> {name: JobType}
        self.job_type_names = {}  # producer_id -> sorted names
        self.dangling_claims = []  # keys of claims naming no record

    @classmethod
    def build(cls, objects: dict, layout: Layout) -> "Snapshot":
        """
        A snapshot of C{objects} (C{{key: StoredObject}}): a producer is in
        it when the claim on its name names its record; a job type when its
        producer is.
        """
        records, claims, job_types = {}, {}, []
        for key, stored in objects.items():
            if stored.record is None:
                continue
            if stored.kind == PRODUCER:
                records[stored.record.producer_id] = stored.record
            elif stored.kind == CLAIM:
                claims[key] = stored.record
            else:
                job_types.append(stored.record)
        snapshot = cls()
        for key, claim in claims.items():
            producer = records.get(claim.producer_id)
            if producer is None or producer.name != claim.name:
                snapshot.dangling_claims.append(key)
                continue
            snapshot.producers[producer.producer_id] = producer
            snapshot.ids_by_name[producer.name] = producer.producer_id
            snapshot.job_types[producer.producer_id] = {}
        for job_type in job_types:
            types = snapshot.job_types.get(job_type.producer_id)
            if types is not None:
                types[job_type.name] = job_type
        snapshot.names = sorted(snapshot.ids_by_name)
        snapshot.job_type_names = {
            producer_id: sorted(types) for producer_id, types in snapshot.job_types.items()
        }
        return snapshot

    def add_producer(self, producer):
        if producer.producer_id in self.producers or producer.name in self.ids_by_name:
            return
        self.producers[producer.producer_id] = producer
        self.ids_by_name[producer.name] = producer.producer_id
        bisect.insort(self.names, producer.name)
        self.job_types[producer.producer_id] = {}
        self.job_type_names[producer.producer_id] = []

    def add_job_type(self, job_type):
        types = self.job_types.get(job_type.producer_id)
        if types is None or job_type.name in types:
            return
        types[job_type.name] = job_type
        bisect.insort(self.job_type_names[job_type.producer_id], job_type.name)

    def list_producers(self, page_size, after):
        lookup = lambda name: self.producers[self.ids_by_name[name]]
        return _page(self.names, lookup, page_size, after)

    def list_job_types(self, producer_id, page_size, after):
        types = self.job_types[producer_id]
        return _page(self.job_type_names[producer_id], types.__getitem__, page_size, after)

    def counts(self):
        return len(self.producers), sum(len(types) for types in self.job_types.values())


def wanted_downloads(listed: dict, known: dict, layout: Layout):
    """
    Which listed objects a refresh downloads.

    @param listed: C{{key: (generation, size)}}, as GCS listed them.
    @param known: C{{key: generation}} of the objects the snapshot holds.
    @return: C{(wanted, too_large)}: C{(key, generation)} pairs of Jack's
        objects that are new or whose generation changed, and
        C{(key, generation, size)} triples of those too large to be records
        (never downloaded).
    """
    wanted, too_large = [], []
    for key, (generation, size) in listed.items():
        if generation is not None and known.get(key) == generation:
            continue
        if layout.kind(key) is None:
            continue
        if size is not None and size > MAX_RECORD_BYTES:
            too_large.append((key, generation, size))
        else:
            wanted.append((key, generation))
    return wanted, too_large
