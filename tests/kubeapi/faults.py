"""Injected latency and faults, and the request counter: what tests and benchmarks turn on and read.

Thread-safe (a test thread arms a fault while the server's loop reads it). A `Rule` matches requests by verb,
resource (`pods`, `spiderippools/status`), namespace and name (None = any) and either answers with an error
(`status` 409 gives a real-shaped Conflict, anything else an InternalError-style Status) for its next `count`
matches, or adds `delay` seconds. `write_delay` delays every write; `pause()` holds every request until
`resume()`. The counter counts every request by (verb, resource) after authentication, e.g. `("create",
"pods")`, `("watch", "pods")`, `("patch", "pods/status")`; requests outside the resource API count under their
path (`("get", "/version")`). `verb="write"` in a rule or in `count()` means create/update/patch/delete.
`errors_answered()` counts the error answers the resource API gave by itself (not injected ones) by status,
verb and resource, e.g. `{"409 update spiderippools/status": 3}`: the compare-and-swap conflicts a benchmark
reports.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass
class Rule:
    """A fault on matching requests: an error status (count times; None = forever) and/or a delay."""

    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    status: int = 0  # 0 = no error, only the delay
    message: str = ""
    count: int | None = 1
    delay: float = 0.0

    def matches(self, verb: str, resource: str, namespace: str, name: str) -> bool:
        return (
            (self.verb is None or self.verb == verb or (self.verb == "write" and verb in WRITE_VERBS))
            and (self.resource is None or self.resource == resource)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == name)
        )


@dataclass(frozen=True)
class Decision:
    delay: float = 0.0
    status: int = 0
    message: str = ""


class Faults:
    """The armed faults and the request counter; every method may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._errors: Counter[tuple[int, str, str]] = Counter()
        self.write_delay = 0.0
        self._paused = threading.Event()

    # arming

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def conflicts(self, n: int, verb: str | None = "write", resource: str | None = None, **kw: Any) -> Rule:
        """The next `n` matching requests answer 409 Conflict."""
        return self.add(Rule(verb=verb, resource=resource, status=409, count=n, **kw))

    def errors(
        self,
        n: int | None,
        status: int = 500,
        verb: str | None = None,
        resource: str | None = None,
        **kw: Any,
    ) -> Rule:
        """The next `n` (None: all) matching requests answer `status` (500 by default)."""
        return self.add(Rule(verb=verb, resource=resource, status=status, count=n, **kw))

    def delay(self, seconds: float, verb: str | None = None, resource: str | None = None, **kw: Any) -> Rule:
        return self.add(Rule(verb=verb, resource=resource, delay=seconds, count=None, **kw))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.write_delay = 0.0
        self.resume()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    # the server's side

    def decide(self, verb: str, resource: str, namespace: str, name: str) -> Decision:
        """Count the request and say what to inject (consuming one use of an error rule)."""
        with self._lock:
            self._counts[(verb, resource)] += 1
            delay = self.write_delay if verb in WRITE_VERBS else 0.0
            for rule in list(self._rules):
                if not rule.matches(verb, resource, namespace, name):
                    continue
                delay += rule.delay
                if rule.status:
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._rules.remove(rule)
                    return Decision(delay, rule.status, rule.message)
            return Decision(delay)

    # the counter

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (v, r), n in self._counts.items()
                if (verb is None or v == verb or (verb == "write" and v in WRITE_VERBS))
                and (resource is None or r == resource)
            )

    def counts(self) -> dict[str, int]:
        """`{"create pods": 3, ...}`"""
        with self._lock:
            return {f"{v} {r}": n for (v, r), n in sorted(self._counts.items())}

    def count_error(self, verb: str, resource: str, status: int) -> None:
        """The server answered a request with an error ``status`` of its own (a 409 conflict, a 404, ...)."""
        with self._lock:
            self._errors[(status, verb, resource)] += 1

    def errors_answered(self) -> dict[str, int]:
        """`{"409 update spiderippools/status": 3, ...}`"""
        with self._lock:
            return {f"{s} {v} {r}": n for (s, v, r), n in sorted(self._errors.items())}

    def reset_counts(self) -> None:
        """Both counters (requests and error answers) back to zero."""
        with self._lock:
            self._counts.clear()
            self._errors.clear()
