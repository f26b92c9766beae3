"""Calendar quarters as staff write them: "2026-Q3"."""

import datetime as dt
import re
from dataclasses import dataclass

from billing.core.invoicing import quarter_bounds

_LABEL = re.compile(r"^(\d{4})-Q([1-4])$")


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, label: str) -> "Quarter":
        match = _LABEL.match(label.strip().upper())
        if not match:
            raise ValueError(f"{label!r} is not a quarter; write it as YYYY-QN, e.g. 2026-Q3")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, day: dt.date) -> "Quarter":
        return cls(day.year, (day.month - 1) // 3 + 1)

    @classmethod
    def last_finished(cls, today: dt.date) -> "Quarter":
        return cls.containing(cls.containing(today).start - dt.timedelta(days=1))

    @property
    def label(self) -> str:
        return f"{self.year}-Q{self.number}"

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> dt.date:
        return quarter_bounds(self.start)[1]

    def __str__(self) -> str:
        return self.label
