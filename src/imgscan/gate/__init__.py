"""The CI gate: severity threshold, ignore file, baseline and policy file, as pure functions.

Everything here takes values and returns values, so a library user gets the same decisions
as the CLI; ``GateConfig`` is those values in one piece, loaded up front so that a bad file is
a usage error before anything is pulled or scanned. The order ``run_gate`` applies:

1. the ignore file drops accepted findings (expired entries stop applying, with a warning);
2. a baseline keeps only findings that are new relative to an earlier JSON report;
3. the policy file adds violations (``category = "policy"``): limits count what is left
   (so with a baseline, ``critical = 0`` means "no new critical finding"), image rules
   (user, size, age, OS, banned packages) are checked afresh and are never baselined; the
   ignore file may accept violations too;
4. the gate fails (exit 1) when a finding at or above ``--fail-on`` remains, or any policy
   violation does.

Exit codes: 0 pass, 1 gate failed, 2 usage error (bad flag, bad ignore/policy/baseline file),
3 the image or environment could not be read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgscan.gate.verdict import (
    EXIT_ERROR,
    EXIT_GATE_FAILED,
    EXIT_PASS,
    EXIT_USAGE,
    POLICY_CATEGORY,
    GateResult,
    evaluate_gate,
    parse_fail_on,
)
from imgscan.model import Finding, Report, ScanWarning, Severity

if TYPE_CHECKING:  # served by __getattr__ on first use: a scan without an ignore file,
    # baseline or policy reads no TOML and loads none of their modules
    from imgscan.gate.baseline import BaselineOutcome, apply_baseline, load_baseline
    from imgscan.gate.ignore import (
        IgnoreFile,
        IgnoreOutcome,
        IgnoreRule,
        apply_ignores,
        load_ignore_file,
        parse_ignore_file,
    )
    from imgscan.gate.policyfile import (
        Policy,
        PolicyResult,
        evaluate_policy,
        is_root_user,
        load_policy,
        parse_policy,
        parse_size,
        purl_base,
    )

#: looked for in the working directory when no ignore file is named (the CLI's default)
DEFAULT_IGNORE_FILE = ".imgscanignore"

#: name -> the submodule that defines it (imported when the name is first asked for)
_LAZY = {
    **dict.fromkeys(("BaselineOutcome", "apply_baseline", "load_baseline"), "baseline"),
    **dict.fromkeys(("IgnoreFile", "IgnoreOutcome", "IgnoreRule", "apply_ignores",
                     "load_ignore_file", "parse_ignore_file"), "ignore"),
    **dict.fromkeys(("Policy", "PolicyResult", "evaluate_policy", "is_root_user",
                     "load_policy", "parse_policy", "parse_size", "purl_base"), "policyfile"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"imgscan.gate.{module}"), name)


def default_ignore_file() -> str | None:
    """``.imgscanignore`` in the working directory when there is one, as ``git`` finds
    ``.gitignore``: a repository's accepted findings apply without a flag."""
    return DEFAULT_IGNORE_FILE if os.path.isfile(DEFAULT_IGNORE_FILE) else None


__all__ = [
    "EXIT_ERROR",
    "EXIT_GATE_FAILED",
    "EXIT_PASS",
    "EXIT_USAGE",
    "POLICY_CATEGORY",
    "BaselineOutcome",
    "GateConfig",
    "GateOutcome",
    "GateResult",
    "IgnoreFile",
    "IgnoreOutcome",
    "IgnoreRule",
    "Policy",
    "PolicyResult",
    "apply_baseline",
    "apply_ignores",
    "default_ignore_file",
    "evaluate_gate",
    "evaluate_policy",
    "is_root_user",
    "load_baseline",
    "load_ignore_file",
    "load_policy",
    "parse_fail_on",
    "parse_ignore_file",
    "parse_policy",
    "parse_size",
    "purl_base",
    "run_gate",
]


@dataclass(frozen=True)
class GateConfig:
    """What the gate judges by: the threshold and the loaded ignore, baseline and policy files.

    A value rather than loose keyword arguments so that one configuration, loaded (and
    checked) once, can judge many reports: every image of an audit, every rootfs of the
    atomic scanner mode."""

    fail_on: Severity | None = None
    ignore: IgnoreFile | None = None
    baseline: Mapping[str, Any] | None = None
    policy: Policy | None = None

    @classmethod
    def load(cls, fail_on: str | Severity | None = None,
             ignore_file: str | Path | None = None, baseline: str | Path | None = None,
             policy: str | Path | None = None) -> GateConfig:
        """Parse ``fail_on`` and read the named files now, so that a mistake in any of them
        is a ``UsageError`` (exit 2) before anything is pulled or scanned."""
        severity = fail_on if isinstance(fail_on, Severity) else parse_fail_on(fail_on)
        ignore = baseline_doc = policy_doc = None
        if ignore_file:
            from imgscan.gate.ignore import load_ignore_file

            ignore = load_ignore_file(ignore_file)
        if baseline:
            from imgscan.gate.baseline import load_baseline

            baseline_doc = load_baseline(baseline)
        if policy:
            from imgscan.gate.policyfile import load_policy

            policy_doc = load_policy(policy)
        return cls(fail_on=severity, ignore=ignore, baseline=baseline_doc, policy=policy_doc)

    @property
    def judges(self) -> bool:
        """Whether a verdict is worth telling: a threshold or a policy was given (without
        either, the gate only filters and always passes)."""
        return self.fail_on is not None or self.policy is not None

    def run(self, report: Report, *, today: date | None = None,
            now: datetime | None = None) -> GateOutcome:
        """``run_gate`` with this configuration."""
        return run_gate(report, fail_on=self.fail_on, ignore=self.ignore,
                        baseline=self.baseline, policy=self.policy, today=today, now=now)


@dataclass
class GateOutcome:
    """The report as the gate saw it (ignored and baselined findings removed, policy
    violations added, ignore-file warnings appended), the decision, and what was left out."""

    report: Report
    gate: GateResult
    ignored: list[tuple[Finding, IgnoreRule]]
    known: list[Finding]
    warnings: list[ScanWarning]

    @property
    def exit_code(self) -> int:
        return self.gate.exit_code


def run_gate(report: Report, *, fail_on: Severity | None = None,
             ignore: IgnoreFile | None = None, baseline: Mapping[str, Any] | None = None,
             policy: Policy | None = None, today: date | None = None,
             now: datetime | None = None) -> GateOutcome:
    """Apply ignore file, baseline, policy and threshold in that order (module docstring)."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    warnings: list[ScanWarning] = []
    ignored: list[tuple[Finding, IgnoreRule]] = []
    used: set[int] = set()
    out = dataclasses.replace(report, findings=list(report.findings))
    if ignore is not None:
        from imgscan.gate.ignore import apply_ignores

        first = apply_ignores(report.findings, ignore, today, warn_unused=False)
        warnings, ignored, used = list(first.warnings), list(first.ignored), set(first.used)
        out = dataclasses.replace(report, findings=list(first.kept))
    known: list[Finding] = []
    if baseline is not None:
        from imgscan.gate.baseline import apply_baseline

        b = apply_baseline(out, baseline)
        out, known = b.report, b.known
    if policy is not None:
        from imgscan.gate.ignore import apply_ignores
        from imgscan.gate.policyfile import evaluate_policy

        pr = evaluate_policy(out, policy, now)
        warnings += pr.warnings
        second = apply_ignores(pr.findings, ignore, today, warn_unused=False)
        ignored += second.ignored
        used |= second.used
        out = dataclasses.replace(out, findings=[*out.findings, *second.kept])
    if ignore is not None:
        from imgscan.gate.ignore import unused_warnings

        warnings += unused_warnings(ignore, used, today)
    out = dataclasses.replace(out, warnings=[*out.warnings, *warnings])
    gate = evaluate_gate(out.findings, fail_on)
    return GateOutcome(report=out, gate=gate, ignored=ignored, known=known, warnings=warnings)
