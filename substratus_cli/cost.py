"""What a change costs an hour, as a provider prices it from a list it ships: the figures a plan
shows under the change and sums in its summary, before anything is paid for."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class HourlyCost:
    """The most an object costs an hour before and after its change (0: absent), in `currency`;
    `lines` say how (machine and GPU prices, on demand and spot, nodes), `basis` where the prices
    come from. `priced` False: the provider has no price for it (the summary says so)."""

    before: float
    after: float
    currency: str = "USD"
    lines: tuple[str, ...] = ()
    basis: str = ""
    priced: bool = True

    @property
    def delta(self) -> float:
        return self.after - self.before

    def to_json(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "delta": round(self.delta, 6),
                "currency": self.currency, "lines": list(self.lines), "basis": self.basis,
                "priced": self.priced}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HourlyCost:
        return cls(float(d["before"]), float(d["after"]), str(d["currency"]),
                   tuple(d.get("lines") or ()), str(d.get("basis") or ""),
                   bool(d.get("priced", True)))


@dataclasses.dataclass(frozen=True)
class CostSummary:
    """The total hourly change of a plan's priced changes, and how many changes had no price."""

    delta: float
    currency: str
    bases: tuple[str, ...]
    unpriced: int

    def line(self) -> str:
        sign = "+" if self.delta >= 0 else "-"
        text = (f"Cost: {sign}{money(abs(self.delta), self.currency)} an hour at most "
                f"({'; '.join(self.bases)})")
        if self.unpriced:
            text += f"; {self.unpriced} change(s) without a price"
        return text


def summarize(costs: Iterable[HourlyCost | None]) -> CostSummary | None:
    """None when no change carries a cost."""
    given = [c for c in costs if c is not None]
    if not given:
        return None
    priced = [c for c in given if c.priced]
    currency = priced[0].currency if priced else given[0].currency
    return CostSummary(sum(c.delta for c in priced), currency,
                       tuple(dict.fromkeys(c.basis for c in priced if c.basis)),
                       len(given) - len(priced))


def money(amount: float, currency: str = "USD") -> str:
    return f"${amount:,.2f}" if currency == "USD" else f"{amount:,.2f} {currency}"
