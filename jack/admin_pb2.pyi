import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jack import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Producer(_message.Message):
    __slots__ = ("producer_id", "name", "description", "created_at")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    name: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, producer_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobType(_message.Message):
    __slots__ = ("producer_id", "name", "queue", "max_retries", "description", "created_at")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    name: str
    queue: _job_pb2.Queue
    max_retries: int
    description: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, producer_id: _Optional[str] = ..., name: _Optional[str] = ..., queue: _Optional[_Union[_job_pb2.Queue, str]] = ..., max_retries: _Optional[int] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateProducerRequest(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateProducerResponse(_message.Message):
    __slots__ = ("producer",)
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    producer: Producer
    def __init__(self, producer: _Optional[_Union[Producer, _Mapping]] = ...) -> None: ...

class GetProducerRequest(_message.Message):
    __slots__ = ("producer_id",)
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    def __init__(self, producer_id: _Optional[str] = ...) -> None: ...

class GetProducerResponse(_message.Message):
    __slots__ = ("producer",)
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    producer: Producer
    def __init__(self, producer: _Optional[_Union[Producer, _Mapping]] = ...) -> None: ...

class ListProducersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProducersResponse(_message.Message):
    __slots__ = ("producers", "next_page_token")
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    producers: _containers.RepeatedCompositeFieldContainer[Producer]
    next_page_token: str
    def __init__(self, producers: _Optional[_Iterable[_Union[Producer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateJobTypeRequest(_message.Message):
    __slots__ = ("producer_id", "name", "queue", "max_retries", "description")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    name: str
    queue: _job_pb2.Queue
    max_retries: int
    description: str
    def __init__(self, producer_id: _Optional[str] = ..., name: _Optional[str] = ..., queue: _Optional[_Union[_job_pb2.Queue, str]] = ..., max_retries: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class CreateJobTypeResponse(_message.Message):
    __slots__ = ("job_type",)
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    job_type: JobType
    def __init__(self, job_type: _Optional[_Union[JobType, _Mapping]] = ...) -> None: ...

class ListJobTypesRequest(_message.Message):
    __slots__ = ("producer_id", "page_size", "page_token")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    page_size: int
    page_token: str
    def __init__(self, producer_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobTypesResponse(_message.Message):
    __slots__ = ("job_types", "next_page_token")
    JOB_TYPES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_types: _containers.RepeatedCompositeFieldContainer[JobType]
    next_page_token: str
    def __init__(self, job_types: _Optional[_Iterable[_Union[JobType, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
