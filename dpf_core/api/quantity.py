"""Kubernetes resource quantities ("500m", "1Gi", "2", "16G"), exact.

DPUFlavor's `dpuResources` / `systemReservedResources` and DPUServiceTemplate's `resourceRequirements` are
corev1.ResourceList values; the vdpuflavor webhook and the DPUDeployment fitting step compare and subtract
them. Values are kept as `Fraction` so "0.1" + "0.2" == "300m" holds exactly, as resource.Quantity does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

# The pattern apimachinery's resource.Quantity publishes in every CRD that embeds one.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(
    r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<bin>[KMGTPE]i)|(?P<dec>[numkMGTPE])|[eE](?P<exp>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)))?"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: int | str) -> Fraction:
    """The exact value of a quantity; ValueError when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"quantities must match the regular expression '{QUANTITY_PATTERN}'")
    if isinstance(value, int):
        return Fraction(value)
    m = _QUANTITY_RE.fullmatch(value)
    if not m:
        raise ValueError(f"quantities must match the regular expression '{QUANTITY_PATTERN}'")
    number = Fraction(Decimal(m["num"]))
    if m["bin"]:
        return number * Fraction(1024) ** _BINARY[m["bin"]]
    if m["dec"]:
        return number * (Fraction(10) ** _DECIMAL[m["dec"]])
    if m["exp"] is not None:
        exponent = Fraction(Decimal(m["exp"]))
        if exponent.denominator != 1:
            # apimachinery refuses fractional exponents too.
            raise ValueError(f"quantity exponent must be an integer: {value!r}")
        return number * (Fraction(10) ** int(exponent))
    return number


def format_quantity(value: Fraction) -> str:
    """A canonical-enough rendering for messages: binary suffixes for whole multiples of 1024, else the integer,
    milli-units, or the decimal."""
    if value.denominator == 1:
        n = value.numerator
        for suffix, power in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
            if n and n % (1024**power) == 0:
                return f"{n // (1024**power)}{suffix}"
        return str(n)
    milli = value * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    return str(Decimal(value.numerator) / Decimal(value.denominator))


def _check(value: int | str) -> int | str:
    parse_quantity(value)
    return value


# A ResourceList value: int or string on the wire, validated as a quantity, rendered as int-or-string + pattern.
Quantity = Annotated[
    int | str,
    AfterValidator(_check),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

ResourceList = dict[str, Quantity]


def exceeding(total: Mapping[str, Any] | None, reserved: Mapping[str, Any] | None) -> dict[str, Fraction]:
    """What `reserved` needs beyond `total`, per resource (absent from total counts as zero).

    Mirrors DPF's GetAllocatableResources: every resource whose total - reserved goes negative is reported.
    """
    if total is None:
        return {}
    need: dict[str, Fraction] = {}
    for name, amount in (reserved or {}).items():
        left = parse_quantity(total[name]) if name in total else Fraction(0)
        left -= parse_quantity(amount)
        if left < 0:
            need[name] = -left
    return need
