"""Exact money arithmetic: fractions inside, Decimal rounded half-up where billing.md says so."""

from decimal import Decimal
from fractions import Fraction

Exact = Fraction | Decimal | int


def exact(value: Exact) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(value)


def round_half_up(value: Exact, places: int = 2) -> Decimal:
    """Round an exact value half away from zero to `places` decimals: 10.965 → 10.97, -0.005 → -0.01."""
    scaled = exact(value) * 10**places
    sign = -1 if scaled < 0 else 1
    whole = (abs(scaled) * 2 + 1) // 2  # floor(|x| + ½)
    return (Decimal(sign * whole) / Decimal(10**places)).quantize(Decimal(1).scaleb(-places))


def round2(value: Exact) -> Decimal:
    return round_half_up(value, 2)
