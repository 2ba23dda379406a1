"""The scoreboard: what a design answered, compared item by item, as it arrives, with what the
golden model says it must answer. Plain Python (no cocotb), so the host side (chip_sim) and
the testbenches running inside the simulator share it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Mismatch:
    """One item (an image's logits, a PE's partial sums) that differs from the golden model."""

    index: int
    image_id: int              # the item's id (the image id for the chip)
    rtl: list[int]
    golden: list[int]

    @property
    def first_difference(self) -> tuple[int, int, int]:
        o = next(i for i, (a, b) in enumerate(zip(self.rtl, self.golden, strict=True)) if a != b)
        return o, self.rtl[o], self.golden[o]

    def __str__(self) -> str:
        o, got, want = self.first_difference
        return (f"item {self.index} (id {self.image_id}) value {o}: rtl {got}, golden {want}")


class Scoreboard:
    """Expected items in order; `add` compares the next answer with the next expectation."""

    def __init__(self, expected, ids: Sequence[int] | None = None, name: str = "results"):
        self.expected = [list(map(int, e)) for e in np.asarray(expected).tolist()]
        self.ids = list(range(len(self.expected))) if ids is None else [int(i) for i in ids]
        if len(self.ids) != len(self.expected):
            raise ValueError(f"{len(self.ids)} ids for {len(self.expected)} expected items")
        self.name = name
        self.received: list[list[int]] = []
        self.mismatches: list[Mismatch] = []

    def add(self, got: Sequence[int]) -> bool:
        i = len(self.received)
        if i >= len(self.expected):
            raise AssertionError(f"{self.name}: item {i} arrived, only {len(self.expected)} "
                                 f"were expected")
        got = [int(v) for v in got]
        self.received.append(got)
        if got != self.expected[i]:
            self.mismatches.append(Mismatch(i, self.ids[i], got, self.expected[i]))
            return False
        return True

    @property
    def done(self) -> bool:
        return len(self.received) == len(self.expected)

    @property
    def bitexact(self) -> int:
        return len(self.received) - len(self.mismatches)

    def summary(self) -> str:
        head = (f"{self.name}: {self.bitexact} of {len(self.expected)} bit-exact, "
                f"{len(self.received)} received")
        if self.mismatches:
            head += f"; first mismatch: {self.mismatches[0]}"
        return head
