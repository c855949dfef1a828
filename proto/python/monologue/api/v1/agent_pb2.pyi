import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TimeRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AskRequest(_message.Message):
    __slots__ = ("question", "spaces", "time_range", "top_k", "retrieval_only")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    question: str
    spaces: _containers.RepeatedScalarFieldContainer[str]
    time_range: TimeRange
    top_k: int
    retrieval_only: bool
    def __init__(self, question: _Optional[str] = ..., spaces: _Optional[_Iterable[str]] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ..., top_k: _Optional[int] = ..., retrieval_only: bool = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("number", "space", "line_id", "timestamp", "labels", "line", "score", "template_id", "cited", "via")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    CITED_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    number: int
    space: str
    line_id: str
    timestamp: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    line: str
    score: float
    template_id: str
    cited: bool
    via: str
    def __init__(self, number: _Optional[int] = ..., space: _Optional[str] = ..., line_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., line: _Optional[str] = ..., score: _Optional[float] = ..., template_id: _Optional[str] = ..., cited: bool = ..., via: _Optional[str] = ...) -> None: ...

class LabelCount(_message.Message):
    __slots__ = ("key", "value", "count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    count: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class TemplateStat(_message.Message):
    __slots__ = ("space", "template_id", "template", "count", "first_seen", "last_seen", "top_values")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    space: str
    template_id: str
    template: str
    count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    top_values: _containers.RepeatedCompositeFieldContainer[LabelCount]
    def __init__(self, space: _Optional[str] = ..., template_id: _Optional[str] = ..., template: _Optional[str] = ..., count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., top_values: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("recall_ms", "prompt_tokens", "generation_ms", "completion_tokens")
    RECALL_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    recall_ms: float
    prompt_tokens: int
    generation_ms: float
    completion_tokens: int
    def __init__(self, recall_ms: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., generation_ms: _Optional[float] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class AskResponse(_message.Message):
    __slots__ = ("answer", "citations", "stats", "timings", "unsupported_figures", "time_range")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIGURES_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    answer: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    stats: _containers.RepeatedCompositeFieldContainer[TemplateStat]
    timings: Timings
    unsupported_figures: _containers.RepeatedScalarFieldContainer[str]
    time_range: TimeRange
    def __init__(self, answer: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., stats: _Optional[_Iterable[_Union[TemplateStat, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., unsupported_figures: _Optional[_Iterable[str]] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class ChatRequest(_message.Message):
    __slots__ = ("session_id", "ask")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ask: AskRequest
    def __init__(self, session_id: _Optional[str] = ..., ask: _Optional[_Union[AskRequest, _Mapping]] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("token", "done")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    token: str
    done: AskResponse
    def __init__(self, token: _Optional[str] = ..., done: _Optional[_Union[AskResponse, _Mapping]] = ...) -> None: ...

class ListSpacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SpaceInfo(_message.Message):
    __slots__ = ("name", "collection", "lines")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    lines: int
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class ListSpacesResponse(_message.Message):
    __slots__ = ("spaces",)
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[SpaceInfo]
    def __init__(self, spaces: _Optional[_Iterable[_Union[SpaceInfo, _Mapping]]] = ...) -> None: ...
