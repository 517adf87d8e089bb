# mypy: ignore-errors
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

DESCRIPTOR: _descriptor.FileDescriptor

class InstallRequest(_message.Message):
    __slots__ = ("transfer_content", "transfer_end", "transfer_request")
    TRANSFER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_CONTENT_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_END_FIELD_NUMBER: _ClassVar[int]
    transfer_request: TransferRequest
    transfer_content: bytes
    transfer_end: TransferEnd
    def __init__(self, transfer_request: TransferRequest | _Mapping | None = ..., transfer_content: bytes | None = ..., transfer_end: TransferEnd | _Mapping | None = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("package_size", "standby_supervisor", "version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STANDBY_SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    version: str
    standby_supervisor: bool
    package_size: int
    def __init__(self, version: str | None = ..., standby_supervisor: bool | None = ..., package_size: int | None = ...) -> None: ...

class TransferEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InstallResponse(_message.Message):
    __slots__ = ("install_error", "sync_progress", "transfer_progress", "transfer_ready", "validated")
    TRANSFER_READY_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SYNC_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VALIDATED_FIELD_NUMBER: _ClassVar[int]
    INSTALL_ERROR_FIELD_NUMBER: _ClassVar[int]
    transfer_ready: TransferReady
    transfer_progress: TransferProgress
    sync_progress: SyncProgress
    validated: Validated
    install_error: InstallError
    def __init__(self, transfer_ready: TransferReady | _Mapping | None = ..., transfer_progress: TransferProgress | _Mapping | None = ..., sync_progress: SyncProgress | _Mapping | None = ..., validated: Validated | _Mapping | None = ..., install_error: InstallError | _Mapping | None = ...) -> None: ...

class TransferReady(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransferProgress(_message.Message):
    __slots__ = ("bytes_received",)
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    bytes_received: int
    def __init__(self, bytes_received: int | None = ...) -> None: ...

class SyncProgress(_message.Message):
    __slots__ = ("percentage_transferred",)
    PERCENTAGE_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    percentage_transferred: int
    def __init__(self, percentage_transferred: int | None = ...) -> None: ...

class Validated(_message.Message):
    __slots__ = ("description", "version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    version: str
    description: str
    def __init__(self, version: str | None = ..., description: str | None = ...) -> None: ...

class InstallError(_message.Message):
    __slots__ = ("detail", "type")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNSPECIFIED: _ClassVar[InstallError.Type]
        INCOMPATIBLE: _ClassVar[InstallError.Type]
        TOO_LARGE: _ClassVar[InstallError.Type]
        PARSE_FAIL: _ClassVar[InstallError.Type]
        INTEGRITY_FAIL: _ClassVar[InstallError.Type]
        INSTALL_RUN_PACKAGE: _ClassVar[InstallError.Type]
        INSTALL_IN_PROGRESS: _ClassVar[InstallError.Type]
        UNEXPECTED_SWITCHOVER: _ClassVar[InstallError.Type]
        SYNC_FAIL: _ClassVar[InstallError.Type]
        NOT_SUPPORTED_ON_BACKUP: _ClassVar[InstallError.Type]
    UNSPECIFIED: InstallError.Type
    INCOMPATIBLE: InstallError.Type
    TOO_LARGE: InstallError.Type
    PARSE_FAIL: InstallError.Type
    INTEGRITY_FAIL: InstallError.Type
    INSTALL_RUN_PACKAGE: InstallError.Type
    INSTALL_IN_PROGRESS: InstallError.Type
    UNEXPECTED_SWITCHOVER: InstallError.Type
    SYNC_FAIL: InstallError.Type
    NOT_SUPPORTED_ON_BACKUP: InstallError.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    type: InstallError.Type
    detail: str
    def __init__(self, type: InstallError.Type | str | None = ..., detail: str | None = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("no_reboot", "standby_supervisor", "version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STANDBY_SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    NO_REBOOT_FIELD_NUMBER: _ClassVar[int]
    version: str
    standby_supervisor: bool
    no_reboot: bool
    def __init__(self, version: str | None = ..., standby_supervisor: bool | None = ..., no_reboot: bool | None = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("activate_error", "activate_ok")
    ACTIVATE_OK_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_ERROR_FIELD_NUMBER: _ClassVar[int]
    activate_ok: ActivateOK
    activate_error: ActivateError
    def __init__(self, activate_ok: ActivateOK | _Mapping | None = ..., activate_error: ActivateError | _Mapping | None = ...) -> None: ...

class ActivateOK(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActivateError(_message.Message):
    __slots__ = ("detail", "type")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNSPECIFIED: _ClassVar[ActivateError.Type]
        NON_EXISTENT_VERSION: _ClassVar[ActivateError.Type]
        NOT_SUPPORTED_ON_BACKUP: _ClassVar[ActivateError.Type]
    UNSPECIFIED: ActivateError.Type
    NON_EXISTENT_VERSION: ActivateError.Type
    NOT_SUPPORTED_ON_BACKUP: ActivateError.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    type: ActivateError.Type
    detail: str
    def __init__(self, type: ActivateError.Type | str | None = ..., detail: str | None = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("activation_fail_message", "individual_supervisor_install", "verify_standby", "version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FAIL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_STANDBY_FIELD_NUMBER: _ClassVar[int]
    INDIVIDUAL_SUPERVISOR_INSTALL_FIELD_NUMBER: _ClassVar[int]
    version: str
    activation_fail_message: str
    verify_standby: VerifyStandby
    individual_supervisor_install: bool
    def __init__(self, version: str | None = ..., activation_fail_message: str | None = ..., verify_standby: VerifyStandby | _Mapping | None = ..., individual_supervisor_install: bool | None = ...) -> None: ...

class VerifyStandby(_message.Message):
    __slots__ = ("standby_state", "verify_response")
    STANDBY_STATE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    standby_state: StandbyState
    verify_response: StandbyResponse
    def __init__(self, standby_state: StandbyState | _Mapping | None = ..., verify_response: StandbyResponse | _Mapping | None = ...) -> None: ...

class StandbyState(_message.Message):
    __slots__ = ("state",)
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNSPECIFIED: _ClassVar[StandbyState.State]
        UNSUPPORTED: _ClassVar[StandbyState.State]
        NON_EXISTENT: _ClassVar[StandbyState.State]
        UNAVAILABLE: _ClassVar[StandbyState.State]
    UNSPECIFIED: StandbyState.State
    UNSUPPORTED: StandbyState.State
    NON_EXISTENT: StandbyState.State
    UNAVAILABLE: StandbyState.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: StandbyState.State
    def __init__(self, state: StandbyState.State | str | None = ...) -> None: ...

class StandbyResponse(_message.Message):
    __slots__ = ("activation_fail_message", "id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FAIL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    activation_fail_message: str
    def __init__(self, id: str | None = ..., version: str | None = ..., activation_fail_message: str | None = ...) -> None: ...
