# mypy: ignore-errors
from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

DESCRIPTOR: _descriptor.FileDescriptor

class Path(_message.Message):
    __slots__ = ("elem", "origin", "target")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ELEM_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    origin: str
    elem: _containers.RepeatedCompositeFieldContainer[PathElem]
    target: str
    def __init__(self, origin: str | None = ..., elem: _Iterable[PathElem | _Mapping] | None = ..., target: str | None = ...) -> None: ...

class PathElem(_message.Message):
    __slots__ = ("key", "name")
    class KeyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: _containers.ScalarMap[str, str]
    def __init__(self, name: str | None = ..., key: _Mapping[str, str] | None = ...) -> None: ...

class TypedValue(_message.Message):
    __slots__ = ("ascii_val", "bool_val", "bytes_val", "double_val", "int_val", "json_ietf_val", "json_val", "proto_bytes", "string_val", "uint_val")
    STRING_VAL_FIELD_NUMBER: _ClassVar[int]
    INT_VAL_FIELD_NUMBER: _ClassVar[int]
    UINT_VAL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_VAL_FIELD_NUMBER: _ClassVar[int]
    JSON_VAL_FIELD_NUMBER: _ClassVar[int]
    JSON_IETF_VAL_FIELD_NUMBER: _ClassVar[int]
    ASCII_VAL_FIELD_NUMBER: _ClassVar[int]
    PROTO_BYTES_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VAL_FIELD_NUMBER: _ClassVar[int]
    string_val: str
    int_val: int
    uint_val: int
    bool_val: bool
    bytes_val: bytes
    json_val: bytes
    json_ietf_val: bytes
    ascii_val: str
    proto_bytes: bytes
    double_val: float
    def __init__(self, string_val: str | None = ..., int_val: int | None = ..., uint_val: int | None = ..., bool_val: bool | None = ..., bytes_val: bytes | None = ..., json_val: bytes | None = ..., json_ietf_val: bytes | None = ..., ascii_val: str | None = ..., proto_bytes: bytes | None = ..., double_val: float | None = ...) -> None: ...

class Update(_message.Message):
    __slots__ = ("duplicates", "path", "val")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VAL_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    path: Path
    val: TypedValue
    duplicates: int
    def __init__(self, path: Path | _Mapping | None = ..., val: TypedValue | _Mapping | None = ..., duplicates: int | None = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("delete", "prefix", "replace", "union_replace", "update")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    UNION_REPLACE_FIELD_NUMBER: _ClassVar[int]
    prefix: Path
    delete: _containers.RepeatedCompositeFieldContainer[Path]
    replace: _containers.RepeatedCompositeFieldContainer[Update]
    update: _containers.RepeatedCompositeFieldContainer[Update]
    union_replace: _containers.RepeatedCompositeFieldContainer[Update]
    def __init__(self, prefix: Path | _Mapping | None = ..., delete: _Iterable[Path | _Mapping] | None = ..., replace: _Iterable[Update | _Mapping] | None = ..., update: _Iterable[Update | _Mapping] | None = ..., union_replace: _Iterable[Update | _Mapping] | None = ...) -> None: ...

class UpdateResult(_message.Message):
    __slots__ = ("op", "path")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        INVALID: _ClassVar[UpdateResult.Operation]
        DELETE: _ClassVar[UpdateResult.Operation]
        REPLACE: _ClassVar[UpdateResult.Operation]
        UPDATE: _ClassVar[UpdateResult.Operation]
        UNION_REPLACE: _ClassVar[UpdateResult.Operation]
    INVALID: UpdateResult.Operation
    DELETE: UpdateResult.Operation
    REPLACE: UpdateResult.Operation
    UPDATE: UpdateResult.Operation
    UNION_REPLACE: UpdateResult.Operation
    PATH_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    path: Path
    op: UpdateResult.Operation
    def __init__(self, path: Path | _Mapping | None = ..., op: UpdateResult.Operation | str | None = ...) -> None: ...

class SetResponse(_message.Message):
    __slots__ = ("prefix", "response", "timestamp")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    prefix: Path
    response: _containers.RepeatedCompositeFieldContainer[UpdateResult]
    timestamp: int
    def __init__(self, prefix: Path | _Mapping | None = ..., response: _Iterable[UpdateResult | _Mapping] | None = ..., timestamp: int | None = ...) -> None: ...
