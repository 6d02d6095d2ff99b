"""Side-by-side timing for the benchmarks: interleaved blocks, medians, paired ratios.

This machine's speed drifts (other work shares its two cores), so a benchmark never times
one variant and then the next: every round runs one small block of each variant, in a
shuffled order, and a ratio is the median over rounds of the ratio *within* a round, where
both variants saw the same conditions. Medians of the per-variant times are shown too.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Comparison", "compare", "machine", "print_machine", "quiet_library_logs"]


@dataclass
class Comparison:
    """Per-operation seconds of each variant, one sample per round."""

    samples: dict[str, list[float]]

    def median(self, variant: str) -> float:
        return statistics.median(self.samples[variant])

    def ratio(self, variant: str, baseline: str) -> tuple[float, float, float]:
        """Median, 25th and 75th percentile of ``variant / baseline`` over paired rounds."""
        pairs = [v / b for v, b in zip(self.samples[variant], self.samples[baseline],
                                       strict=True)]  # fmt: skip
        if len(pairs) < 4:
            median = statistics.median(pairs)
            return median, min(pairs), max(pairs)
        quartiles = statistics.quantiles(pairs, n=4)
        return statistics.median(pairs), quartiles[0], quartiles[2]

    def table(self, baseline: str, *, unit: str = "µs", scale: float = 1e6) -> str:
        width = max(len(v) for v in self.samples) + 2
        lines = [
            f"{'variant':<{width}} {'median ' + unit + '/op':>14}  "
            f"{'ratio vs ' + baseline:>20}  {'(p25 - p75)':>15}"
        ]
        for variant in self.samples:
            median = self.median(variant) * scale
            if variant == baseline:
                lines.append(f"{variant:<{width}} {median:>14.1f}  {'1.000':>20}")
                continue
            ratio, low, high = self.ratio(variant, baseline)
            lines.append(
                f"{variant:<{width}} {median:>14.1f}  {ratio:>20.3f}  "
                f"{f'({low:.3f} - {high:.3f})':>15}"
            )
        return "\n".join(lines)


def compare(
    variants: Mapping[str, Callable[[int], object]],
    *,
    block: int,
    rounds: int,
    warmup: int = 1,
    seed: int = 1,
) -> Comparison:
    """Time ``variants`` (each ``run(n)`` does ``n`` operations) in interleaved blocks.

    ``warmup`` rounds are run first and thrown away (connections, caches, imports).
    """
    order = list(variants)
    shuffle = random.Random(seed).shuffle
    samples: dict[str, list[float]] = {name: [] for name in order}
    for round_number in range(warmup + rounds):
        shuffle(order)
        for name in order:
            started = time.perf_counter()
            variants[name](block)
            elapsed = time.perf_counter() - started
            if round_number >= warmup:
                samples[name].append(elapsed / block)
    return Comparison(samples)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else os.cpu_count()),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average": load,
    }  # fmt: skip


def print_machine(argv: Sequence[str] | None = None) -> None:
    info = machine()
    command = " ".join(["python", *(argv if argv is not None else sys.argv)])
    print(f"command: {command}")
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, {info['python']}")
    print(f"load average at start: {info['load average']}")
    print()


def print_load_at_end() -> None:
    print(f"\nload average at end: {machine()['load average']}")


def quiet_library_logs() -> None:
    """Keep the mailer's failure warnings off the terminal; they are still created and
    handled (by a NullHandler), as in an application that logs somewhere."""
    logging.getLogger("mailfailover").addHandler(logging.NullHandler())
