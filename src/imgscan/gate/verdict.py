"""The verdict: severity threshold, exit codes and the gate's result value.

Kept apart from ``imgscan.gate`` so that the ignore, baseline and policy modules can name the
policy category and the exit codes without importing the pipeline that combines them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from imgscan.errors import UsageError
from imgscan.model import Finding, Severity

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3

POLICY_CATEGORY = "policy"
#: the analyzer name that gate warnings carry (unchanged since the gate was one module)
ANALYZER = "imgscan.policy"


@dataclass(frozen=True)
class GateResult:
    """What the gate decided and why; ``failing`` are the findings that made it fail."""

    passed: bool
    fail_on: Severity | None
    failing: tuple[Finding, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_GATE_FAILED

    def summary(self) -> str:
        """One line for the terminal: ``gate failed: 2 findings at or above high, 1 policy``."""
        if self.passed:
            what = f"no finding at or above {self.fail_on.value}" if self.fail_on else "no gate"
            return f"gate passed: {what}"
        policy = sum(1 for f in self.failing if f.category == POLICY_CATEGORY)
        sev = len(self.failing) - policy
        parts = []
        if sev:
            parts.append(f"{sev} finding{'s' if sev != 1 else ''} at or above "
                         f"{self.fail_on.value if self.fail_on else '?'}")
        if policy:
            parts.append(f"{policy} policy violation{'s' if policy != 1 else ''}")
        return "gate failed: " + ", ".join(parts)


def evaluate_gate(findings: Iterable[Finding], fail_on: Severity | None,
                  policy_fails: bool = True) -> GateResult:
    """Fail when a finding at or above ``fail_on`` remains, or (``policy_fails``) any policy
    violation does. ``fail_on=None`` means no severity threshold."""
    fs = list(findings)
    failing = tuple(
        f for f in fs
        if (fail_on is not None and f.severity >= fail_on)
        or (policy_fails and f.category == POLICY_CATEGORY)
    )
    counts = Counter(f.severity.value for f in fs)
    return GateResult(passed=not failing, fail_on=fail_on, failing=failing,
                      counts={s.value: counts.get(s.value, 0) for s in Severity})


def parse_fail_on(text: str | None) -> Severity | None:
    """``--fail-on`` value: a severity name, or ``none``/empty for no threshold."""
    if text is None or text.strip().lower() in ("", "none", "never"):
        return None
    try:
        return Severity.parse(text.strip())
    except ValueError:
        names = ", ".join(s.value for s in Severity)
        raise UsageError(f"--fail-on: unknown severity {text!r} (one of {names}, or none)") \
            from None
