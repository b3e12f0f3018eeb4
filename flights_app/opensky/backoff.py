"""Exponential backoff with full jitter and a cap, on an injectable clock."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Decides when the next request may go out after failures.

    Each consecutive failure doubles the ceiling (``base_s * 2**n``, capped at
    ``max_s``) and the wait is drawn uniformly below it (full jitter), but
    never below ``base_s`` so a failing source is not hammered. A server's own
    retry-after is a floor: no request goes out before it.
    """

    base_s: float
    max_s: float
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    not_before: float = 0.0

    def ready(self) -> bool:
        return self.clock() >= self.not_before

    def seconds_left(self) -> float:
        return max(0.0, self.not_before - self.clock())

    def success(self) -> None:
        self.failures = 0
        self.not_before = 0.0

    def failure(self, retry_after_s: float | None = None) -> float:
        """Record a failure; return how long until the next attempt may go out."""
        self.failures += 1
        ceiling = min(self.max_s, self.base_s * 2 ** min(self.failures, 32))
        wait = max(min(self.base_s, ceiling), self.rng.uniform(0, ceiling))
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        self.not_before = self.clock() + wait
        return wait
