"""Kubernetes-style API errors shared by every store implementation and by admission.

The names and HTTP codes follow apimachinery's StatusReason so the twin API server can turn any of them
into a `Status` body unchanged, and the kube adapter can turn a real `Status` back into one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldCause:
    """One bad field, as in a Status `details.causes[]` entry."""

    field: str  # dotted path on the wire, e.g. "spec.strategy.rollingUpdate.maxUnavailable"
    message: str
    reason: str = "FieldValueInvalid"  # FieldValueInvalid|FieldValueRequired|FieldValueNotSupported|FieldValueForbidden|FieldValueDuplicate|FieldValueTooLong

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ApiError(Exception):
    code: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str, *, kind: str = "", name: str = "", group: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group

    def to_status(self) -> dict[str, object]:
        details: dict[str, object] = {}
        if self.name:
            details["name"] = self.name
        if self.kind:
            details["kind"] = self.kind.lower() + "s" if self.code == 404 else self.kind
        if self.group:
            details["group"] = self.group
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": details,
            "code": self.code,
        }


def is_transient(e: BaseException) -> bool:
    """429 and 5xx: the API server's trouble (overload, brownout), worth a retry rather than a verdict."""
    return isinstance(e, ApiError) and (e.code == 429 or e.code >= 500)


class ResourceVersionTooLarge(ApiError):
    """A watch from a resourceVersion the store has not reached yet (the API server answers 504 Timeout)."""

    code = 504
    reason = "Timeout"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class Gone(ApiError):
    """A watch asked for a resourceVersion older than the retained history (HTTP 410, reason Expired)."""

    code = 410
    reason = "Expired"


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Forbidden(ApiError):
    """Admission refused the request (a validating webhook's "denied the request")."""

    code = 403
    reason = "Forbidden"


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: int = 1, **kw: str) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    code = 503
    reason = "ServiceUnavailable"


@dataclass
class _InvalidPayload:
    causes: list[FieldCause] = field(default_factory=list)


def invalid_message(kind: str, group: str, name: str, causes: list[FieldCause]) -> str:
    """apimachinery's NewInvalid: the qualified kind (`Kind.group`), the name, then the field errors as one
    aggregate (a lone error as is, several in brackets, comma-separated)."""
    qualified = f"{kind}.{group}" if group else kind
    shown = [str(c) for c in causes]
    if not shown:
        return f'{qualified} "{name}" is invalid'
    return f'{qualified} "{name}" is invalid: ' + (shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]")


def denied_by(webhook: str, message: str) -> str:
    """The API server's wording for a validating webhook's refusal (ToStatusErr): the webhook's own message
    behind `admission webhook "<name>" denied the request: `; code, reason and causes stay the webhook's. No
    webhook (the API server's own validation): the message as it is."""
    return f'admission webhook "{webhook}" denied the request: {message}' if webhook else message


class Invalid(ApiError):
    """HTTP 422: every bad field of one object, never just the first. `webhook` names the validating webhook
    that refused (DPF's webhooks answer NewInvalid); empty for the API server's own validation (schema, CEL)."""

    code = 422
    reason = "Invalid"

    def __init__(self, kind: str, name: str, causes: list[FieldCause], *, group: str = "", webhook: str = "") -> None:
        self.causes = list(causes)
        self.webhook = webhook
        message = invalid_message(kind, group, name, self.causes)
        super().__init__(denied_by(webhook, message), kind=kind, name=name, group=group)

    def to_status(self) -> dict[str, object]:
        status = super().to_status()
        details = dict(status["details"])  # type: ignore[call-overload]
        details["causes"] = [{"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes]
        status["details"] = details
        return status
