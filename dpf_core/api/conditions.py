"""DPF's condition model (internal/conditions), shared by every svc and operator controller.

A kind lists its condition types with `Ready` first. The controller pre-creates them all as Unknown/Pending,
sets each as its phase runs, and ends every pass with `summarize_ready`: Ready is True/Success only when every
other listed condition is True; otherwise False with the most severe child reason and the names of the
conditions that are not True.

These run on every reconcile, so they mutate the list in place, create a Condition only when a type is new
(`model_construct`: the inputs are our own constants and clock strings) and report whether anything changed so
the caller can skip a status write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .meta import Condition, ConditionStatus

TYPE_READY = "Ready"

REASON_SUCCESS = "Success"
REASON_PENDING = "Pending"
REASON_ERROR = "Error"  # recoverable
REASON_FAILURE = "Failure"  # terminal
REASON_AWAITING_DELETION = "AwaitingDeletion"

MESSAGE_NOT_READY_TEMPLATE = "The following conditions are not ready: {}"

# Severity for the Ready summary; reasons not listed (Error, or anything custom) count as Pending.
_SEVERITY: dict[str, int] = {REASON_AWAITING_DELETION: 3, REASON_FAILURE: 2, REASON_PENDING: 1}


# metav1.Condition's message is at most 32768 characters; a set of 1,000 children names more than that.
NAMES_IN_MESSAGE = 10


def list_names(names: Sequence[str], sep: str = ",", limit: int = NAMES_IN_MESSAGE) -> str:
    """The first `limit` names, then how many more: a condition message stays readable and under the API's
    limit however many objects it is about (a write over the limit is rejected and the status never lands)."""
    if len(names) <= limit:
        return sep.join(names)
    return f"{sep.join(names[:limit])}{sep} and {len(names) - limit} more"


def get_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    for c in conditions:
        if c.type == type:
            return c
    return None


def is_true(conditions: Sequence[Condition], type: str) -> bool:
    c = get_condition(conditions, type)
    return c is not None and c.status == "True"


def set_condition(
    conditions: list[Condition],
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: str,
    observed_generation: int | None = None,
    *,
    copy_on_write: bool = False,
) -> bool:
    """apimachinery's SetStatusCondition: lastTransitionTime moves only when the status changes; reason,
    message and observedGeneration are always overwritten. Returns whether the list changed.

    `copy_on_write`: a changed condition is replaced by an edited copy instead of edited in place, for a list
    whose elements are shared with a store snapshot (read-only)."""
    c = get_condition(conditions, type)
    if copy_on_write and c is not None and (c.status, c.reason, c.message, c.observed_generation) != (
        status, reason, message, observed_generation
    ):
        i = next(i for i, x in enumerate(conditions) if x is c)
        c = conditions[i] = c.model_copy()
    if c is None:
        conditions.append(
            Condition.model_construct(
                type=type,
                status=status,
                observed_generation=observed_generation,
                last_transition_time=now,
                reason=reason,
                message=message,
            )
        )
        return True
    changed = False
    if c.status != status:
        c.status = status
        c.last_transition_time = now
        changed = True
    if c.reason != reason:
        c.reason = reason
        changed = True
    if c.message != message:
        c.message = message
        changed = True
    if c.observed_generation != observed_generation:
        c.observed_generation = observed_generation
        changed = True
    return changed


def init_conditions(conditions: list[Condition], types: Iterable[str], now: str) -> bool:
    """DPF's EnsureConditions: every listed type that is absent is added as Unknown/Pending."""
    changed = False
    for t in types:
        if get_condition(conditions, t) is None:
            conditions.append(
                Condition.model_construct(
                    type=t,
                    status="Unknown",
                    observed_generation=None,
                    last_transition_time=now,
                    reason=REASON_PENDING,
                    message="",
                )
            )
            changed = True
    return changed


def most_severe_reason(reasons: Iterable[str]) -> str:
    """AwaitingDeletion > Failure > Pending; anything else (Error included) ranks as Pending."""
    best, rank = REASON_PENDING, 1
    for r in reasons:
        s = _SEVERITY.get(r, 0)
        if s > rank:
            best, rank = r, s
    return best


def summarize_ready(
    conditions: list[Condition],
    types: Sequence[str] | None,
    now: str,
    observed_generation: int | None = None,
) -> bool:
    """Set `Ready` from the other conditions. `types` = the kind's condition list (Ready in it is skipped; a
    listed type that is missing counts as not ready); None = every condition present, as DPF's SetSummary
    does. Returns whether the list changed."""
    not_ready: list[str] = []
    reason, rank = REASON_PENDING, 1
    if types is None:
        candidates: Iterable[tuple[str, Condition | None]] = ((c.type, c) for c in conditions)
    else:
        candidates = ((t, get_condition(conditions, t)) for t in types)
    for t, c in candidates:
        if t == TYPE_READY:
            continue
        if c is not None and c.status == "True":
            continue
        not_ready.append(t)
        s = _SEVERITY.get(c.reason, 0) if c is not None else 1
        if s > rank:
            reason, rank = (c.reason if c is not None else REASON_PENDING), s
    if not not_ready:
        return set_condition(conditions, TYPE_READY, "True", REASON_SUCCESS, "", now, observed_generation)
    message = MESSAGE_NOT_READY_TEMPLATE.format(", ".join(not_ready))
    return set_condition(conditions, TYPE_READY, "False", reason, message, now, observed_generation)
