"""Scenario parameter types: durations (constant or a distribution), sizes and rates.

A scenario author writes what they would say out loud: `boot_time: 2m30s`, `bfb_size: 1.5GiB`,
`host_uplink: 25Gbit/s`, or a distribution when a constant would hide the spread that makes a fleet
interesting (`{dist: lognormal, mean: 150s, sd: 20s, max: 5m}`). Every sampled duration is a float of
seconds; sizes are int bytes; rates are float bytes per second.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from .rng import RandomSource

# Go's time.ParseDuration units (plus days, which scenarios about uptime want); "1h30m", "90s", "250ms".
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_NUMBER = re.compile(r"^[+]?(\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_seconds(value: Any) -> float:
    """Seconds from a number or a Go-style duration string ("90s", "5m", "1h30m", "1.5h", "250ms", "12.5")."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _NUMBER.match(text):
            seconds = float(text)
        else:
            pos = 0
            seconds = 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
                pos = m.end()
            if pos != len(text) or pos == 0:
                raise ValueError(f"not a duration: {value!r} (write e.g. 90s, 5m, 1h30m or seconds)")
    else:
        raise ValueError(f"not a duration: {value!r}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0: {value!r}")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_seconds)]

DistName = Literal["constant", "normal", "lognormal", "uniform", "exponential", "triangular"]

# Which parameters each distribution needs; anything else given is an error (a typo would otherwise be ignored).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "normal": ("mean", "sd"),
    "lognormal": ("mean", "sd"),
    "uniform": ("low", "high"),
    "exponential": ("mean",),
    "triangular": ("low", "high", "mode"),
}


class Duration(BaseModel):
    """A duration parameter: a constant or a distribution, sampled in seconds.

    Forms accepted: `90`, `12.5`, `"90s"`, `"1h30m"`, or a mapping `{dist, <params>, min?, max?}`:
    - constant: `value`
    - normal: `mean`, `sd` (truncated at 0 unless `min` says otherwise)
    - lognormal: `mean`, `sd` of the duration itself (not of its logarithm: that is what people measure)
    - uniform: `low`, `high` (or `min`, `max`)
    - exponential: `mean`
    - triangular: `low`, `high`, `mode`
    `min` / `max` clamp every sample (for uniform without low/high they are the bounds). Every parameter is
    itself a duration, so `mean: 2m` works.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: DistName = "constant"
    value: Seconds | None = None
    mean: Seconds | None = None
    sd: Seconds | None = None
    low: Seconds | None = None
    high: Seconds | None = None
    mode: Seconds | None = None
    min: Seconds | None = None
    max: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, Duration):
            return data
        if isinstance(data, int | float | str) and not isinstance(data, bool):
            return {"dist": "constant", "value": parse_seconds(data)}
        if isinstance(data, dict) and data.get("dist", "constant") == "uniform" and "low" not in data and "high" not in data:
            data = dict(data)
            if "min" in data:
                data["low"] = data["min"]
            if "max" in data:
                data["high"] = data["max"]
        return data

    @model_validator(mode="after")
    def _check(self) -> Duration:
        required = _REQUIRED[self.dist]
        missing = [p for p in required if getattr(self, p) is None]
        if missing:
            raise ValueError(f"dist {self.dist} needs {', '.join(missing)}")
        extra = [p for p in ("value", "mean", "sd", "low", "high", "mode") if p not in required and getattr(self, p) is not None]
        if extra:
            raise ValueError(f"dist {self.dist} does not take {', '.join(extra)}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.mode is not None and self.low is not None and self.high is not None and not self.low <= self.mode <= self.high:
            raise ValueError(f"mode {self.mode} outside [{self.low}, {self.high}]")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if self.dist == "lognormal" and self.mean is not None and self.mean <= 0:
            raise ValueError("lognormal needs mean > 0")
        return self

    @classmethod
    def of(cls, value: Any) -> Duration:
        """Coerce anything a scenario may write (or a Duration) into a Duration."""
        return value if isinstance(value, Duration) else cls.model_validate(value)

    @property
    def is_constant(self) -> bool:
        return self.dist == "constant"

    @property
    def expected(self) -> float:
        """The distribution's mean before clamping (for documentation and quick estimates, not for sampling)."""
        if self.dist == "constant":
            return float(self.value or 0.0)
        if self.dist in ("normal", "lognormal", "exponential"):
            return float(self.mean or 0.0)
        if self.dist == "uniform":
            return (float(self.low or 0.0) + float(self.high or 0.0)) / 2
        return (float(self.low or 0.0) + float(self.high or 0.0) + float(self.mode or 0.0)) / 3

    def sample(self, rng: RandomSource) -> float:
        """One draw in seconds, never negative. A constant draws nothing from `rng`."""
        d = self.dist
        if d == "constant":
            x = float(self.value or 0.0)
        elif d == "normal":
            x = rng.gauss(float(self.mean or 0.0), float(self.sd or 0.0))
        elif d == "lognormal":
            mean, sd = float(self.mean or 0.0), float(self.sd or 0.0)
            sigma2 = math.log1p((sd / mean) ** 2)
            x = rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
        elif d == "uniform":
            x = rng.uniform(float(self.low or 0.0), float(self.high or 0.0))
        elif d == "exponential":
            mean = float(self.mean or 0.0)
            x = rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        else:
            x = rng.triangular(float(self.low or 0.0), float(self.high or 0.0), float(self.mode or 0.0))
        if self.min is not None:
            x = max(x, self.min)
        if self.max is not None:
            x = min(x, self.max)
        return max(x, 0.0)

    def __str__(self) -> str:
        if self.dist == "constant":
            return f"{self.value:g}s"
        params = ", ".join(f"{k}={v:g}s" for k, v in self.model_dump(exclude_none=True).items() if k != "dist")
        return f"{self.dist}({params})"


def const(seconds: float) -> Duration:
    return Duration(dist="constant", value=seconds)


# --- sizes and rates ---------------------------------------------------------------------------------
# SI prefixes are powers of 1000 and IEC ones ("Ki", "Mi") powers of 1024, as in Kubernetes quantities and
# `ls -h --si`: "512KB" is 512000 bytes, "512KiB" is 524288.
_PREFIX = {
    "": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P|)(B|b|bit|bits|byte|bytes|)$")
_RATE = re.compile(
    r"^(\d+(?:\.\d+)?|\.\d+)\s*(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P|)(B|b|bit|bits|byte|bytes)?(?:/s|ps|/sec)$"
)


def _scaled(number: str, prefix: str, unit: str) -> float:
    value = float(number) * _PREFIX[prefix]
    return value / 8 if unit in ("b", "bit", "bits") else value


def parse_size(value: Any) -> int:
    """Bytes from a number or "1.5GiB", "512KB", "10Gi", "8Mbit". A bare "b" means bits, "B" bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        n = float(value)
    elif isinstance(value, str):
        m = _SIZE.match(value.strip())
        if not m:
            raise ValueError(f"not a size: {value!r} (write e.g. 1.5GiB, 512KB or bytes)")
        n = _scaled(m.group(1), m.group(2), m.group(3))
    else:
        raise ValueError(f"not a size: {value!r}")
    if n < 0 or math.isinf(n) or math.isnan(n):
        raise ValueError(f"a size must be finite and >= 0: {value!r}")
    return round(n)


def parse_rate(value: Any) -> float:
    """Bytes per second from a number (already bytes/s) or "10Gbit/s", "25Gbps", "40MB/s", "1GiB/s"."""
    if isinstance(value, bool):
        raise ValueError(f"not a rate: {value!r}")
    if isinstance(value, int | float):
        r = float(value)
    elif isinstance(value, str):
        text = value.strip()
        m = _RATE.match(text)
        if m:
            unit = m.group(3) or ""
            if not unit and text.endswith("ps"):
                # "25Gps" is not a thing; "bps" is caught as unit "b" + "ps", so a bare "ps" means bytes.
                unit = "B"
            r = _scaled(m.group(1), m.group(2), unit or "B")
        elif _NUMBER.match(text):
            r = float(text)
        else:
            raise ValueError(f"not a rate: {value!r} (write e.g. 10Gbit/s, 25Gbps, 40MB/s or bytes per second)")
    else:
        raise ValueError(f"not a rate: {value!r}")
    if r <= 0 or math.isinf(r) or math.isnan(r):
        raise ValueError(f"a rate must be finite and > 0: {value!r}")
    return r


Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[float, BeforeValidator(parse_rate)]


def format_size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.3g}{unit}"
    return f"{nbytes:g}B"


def format_rate(bps: float) -> str:
    bits = bps * 8
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.3g}{unit}"
    return f"{bits:g}bit/s"
