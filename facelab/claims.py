"""Checking a paper's claims against our measurements, with the spread made explicit.

A claim is *reproduced* when our value is on the claimed side (or, for a "value" claim,
within ``k`` spreads of the paper's number), *not reproduced* when it is clearly on the other
side, and *not resolved* when the difference is inside the spread (one standard deviation
by default) — an ordering inside the noise is not evidence either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

VERDICTS = ("reproduced", "not reproduced", "not resolved")


@dataclass(frozen=True)
class ClaimCheck:
    claim: str
    paper: str
    ours: str
    verdict: str

    def as_row(self) -> dict[str, str]:
        return {"claim": self.claim, "paper": self.paper, "ours": self.ours, "verdict": self.verdict}


def check_value(claim: str, *, paper: float, ours: float, spread: float, unit: str = "", k: float = 1.0,
                tolerance: float = 0.0) -> ClaimCheck:
    """Is ``ours`` within ``k * spread + tolerance`` of the paper's ``paper`` value?"""
    if not math.isfinite(ours):
        verdict = "not resolved"
    else:
        verdict = "reproduced" if abs(ours - paper) <= k * spread + tolerance else "not reproduced"
    return ClaimCheck(claim, f"{paper:g}{unit}", f"{ours:.2f}{unit} ± {spread:.2f}", verdict)


def check_order(claim: str, *, better: float, worse: float, spread: float, higher_is_better: bool,
                names: tuple[str, str] = ("A", "B"), unit: str = "") -> ClaimCheck:
    """Is ``better`` really better than ``worse`` by more than ``spread``?"""
    diff = (better - worse) if higher_is_better else (worse - better)
    if not (math.isfinite(diff) and math.isfinite(spread)) or abs(diff) <= spread:
        verdict = "not resolved"
    else:
        verdict = "reproduced" if diff > 0 else "not reproduced"
    return ClaimCheck(claim, f"{names[0]} better than {names[1]}",
                      f"{names[0]} {better:.2f}{unit} vs {names[1]} {worse:.2f}{unit} (spread {spread:.2f})", verdict)
