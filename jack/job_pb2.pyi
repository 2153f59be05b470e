import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Queue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_UNSPECIFIED: _ClassVar[Queue]
    QUEUE_IMMEDIATE: _ClassVar[Queue]
    QUEUE_HIGH: _ClassVar[Queue]
    QUEUE_MEDIUM: _ClassVar[Queue]
    QUEUE_LOW: _ClassVar[Queue]
QUEUE_UNSPECIFIED: Queue
QUEUE_IMMEDIATE: Queue
QUEUE_HIGH: Queue
QUEUE_MEDIUM: Queue
QUEUE_LOW: Queue

class Job(_message.Message):
    __slots__ = ("job_id", "producer_id", "job_type", "queue", "payload", "run_at", "enqueued_at", "trace_id", "max_retries")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    producer_id: str
    job_type: str
    queue: Queue
    payload: bytes
    run_at: _timestamp_pb2.Timestamp
    enqueued_at: _timestamp_pb2.Timestamp
    trace_id: str
    max_retries: int
    def __init__(self, job_id: _Optional[str] = ..., producer_id: _Optional[str] = ..., job_type: _Optional[str] = ..., queue: _Optional[_Union[Queue, str]] = ..., payload: _Optional[bytes] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., max_retries: _Optional[int] = ...) -> None: ...
