"""The one error every translator raises for bad input: it names the object and the field."""

from __future__ import annotations


class ResourceError(ValueError):
    """A resource that cannot be translated; str() is one line: `Kind name: field: reason`."""

    def __init__(self, obj: dict | None, field: str, reason: str):
        kind = (obj or {}).get("kind", "resource")
        name = ((obj or {}).get("metadata") or {}).get("name", "?")
        self.kind, self.name, self.field, self.reason = kind, name, field, reason
        super().__init__(f"{kind} {name}: {field}: {reason}" if field else f"{kind} {name}: {reason}")


def check_fields(obj: dict, where: str, value: dict, allowed: set[str]) -> None:
    """Raise ResourceError for a key of `value` outside `allowed` (a typo must not pass silently)."""
    if not isinstance(value, dict):
        raise ResourceError(obj, where, f"expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ResourceError(obj, f"{where}.{unknown[0]}" if where else unknown[0],
                            f"unknown field (known: {', '.join(sorted(allowed))})")


def duration_s(obj: dict, where: str, text, *, allow_zero: bool = True) -> float:
    """Parse a Kubernetes/Istio duration ('10s', '500ms', '1m30s', '0.5s') into seconds."""
    import re

    if not isinstance(text, str):
        raise ResourceError(obj, where, f"{text!r} is not a duration such as '10s' or '500ms'")
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ResourceError(obj, where, f"{text!r} is not a duration such as '10s' or '500ms'")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    value = sum(float(n) * scale[u] for n, u in parts)
    if value == 0 and not allow_zero:
        raise ResourceError(obj, where, f"{text!r} must be greater than 0")
    return value


def positive_int(obj: dict, where: str, value, *, minimum: int = 1, maximum: int = 2**31 - 1) -> int:
    """An integer in [minimum, maximum], or a ResourceError naming the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ResourceError(obj, where, f"{value!r} is not an integer in {minimum}..{maximum}")
    return value
