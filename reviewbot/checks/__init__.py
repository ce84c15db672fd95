"""Every check reviewbot runs, listed once.

Adding a rule means writing one module with a ``CHECK`` and adding it to ``all_checks``.
The imports live inside the function so that importing ``reviewbot.checks.base`` from a
rule module does not import every other rule first.
"""

from __future__ import annotations

from reviewbot.checks.base import Check, CheckContext


def all_checks() -> tuple[Check, ...]:
    import reviewbot.checks.dependency_fresh as dependency_fresh
    import reviewbot.checks.local_stop_pause as local_stop_pause
    import reviewbot.checks.send_missing_run as send_missing_run

    return (
        send_missing_run.CHECK,
        local_stop_pause.CHECK,
        dependency_fresh.CHECK,
    )


__all__ = ["Check", "CheckContext", "all_checks"]
