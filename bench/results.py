"""Results: each metric's samples per registry, their medians and ratio."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.workload import Metric

DOCKYARD = "dockyard"
DISTRIBUTION = "distribution"


@dataclass
class Result:
    """One metric of one workload, for both registries."""

    metric: Metric
    title: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, server: str) -> float | None:
        """The median of the server's samples; None if it has none."""
        samples = self.samples.get(server)
        return statistics.median(samples) if samples else None

    @property
    def ratio(self) -> float | None:
        """Dockyard / Distribution."""
        dockyard, distribution = self.value(DOCKYARD), self.value(DISTRIBUTION)
        if dockyard is None or not distribution:
            return None
        return dockyard / distribution

    @property
    def target_met(self) -> bool | None:
        target, ratio = self.metric.target, self.ratio
        if target is None or ratio is None:
            return None
        return ratio >= target if self.metric.better == "higher" else ratio <= target

    def target_text(self) -> str:
        if self.metric.target is None:
            return ""
        sign = ">=" if self.metric.better == "higher" else "<="
        return f"{sign} {self.metric.target:g}"

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.metric.key,
            "title": self.title,
            "unit": self.metric.unit,
            "better": self.metric.better,
            DOCKYARD: self.value(DOCKYARD),
            DISTRIBUTION: self.value(DISTRIBUTION),
            "ratio": self.ratio,
            "target": self.target_text() or None,
            "target_met": self.target_met,
            "samples": self.samples,
            "errors": self.errors,
        }


def table(results: list[Result]) -> str:
    """The results as a Markdown table, which reads well in a terminal too."""
    header = (
        "| workload | unit | better | Dockyard | Distribution "
        "| Dockyard/Distribution | target | met |"
    )
    lines = [header, "|---|---|---|--:|--:|--:|---|---|"]
    for result in results:
        cells = [
            result.title,
            result.metric.unit,
            result.metric.better,
            _number(result.value(DOCKYARD), result.errors.get(DOCKYARD)),
            _number(result.value(DISTRIBUTION), result.errors.get(DISTRIBUTION)),
            "" if result.ratio is None else f"{result.ratio:.3g}",
            result.target_text(),
            {True: "met", False: "not met", None: ""}[result.target_met],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float | None, error: str | None) -> str:
    if value is None:
        return "error" if error else ""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
