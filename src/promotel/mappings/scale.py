"""Unit scales applied as exact rationals, so that every scaled value is correctly rounded.

A scale is the rational ``num / den`` a value is multiplied by (``percent → ratio`` is 1/100, ``ms → s``
1/1000, ``MiB → By`` 1048576/1). Multiplying by the float nearest to 1/100 (0.01, which is slightly more
than 1/100) gives ``95 × 0.01 = 0.9500000000000001``; dividing by 100 gives the double nearest to 95/100,
``0.95``. IEEE 754 rounds one multiplication or one division of two doubles correctly, and an integer up to
2⁵³ is a double exactly, so:

* ``num == den == 1``: the value itself;
* ``den == 1``: one multiplication by ``num`` (exact for a power of two such as 1048576);
* ``num == 1``: one division by ``den``;
* anything else (``5/2``, ``3/10``): the exact product of the value's own rational (``float.as_integer_ratio``)
  and ``num/den``, rounded once by Python's integer true division, which is correctly rounded.

A scale given as a float is read as the decimal it is written as (``Scale.of(0.001)`` is 1/1000, not the
binary double nearest to it): configs and tables write ``0.001`` meaning a thousandth.

Stateless; ``Scale`` values are immutable.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

# Integers of at most 53 bits are doubles exactly: ×num and ÷den are then one correctly rounded operation.
_EXACT = 1 << 53


class Scale(NamedTuple):
    """The rational ``num / den`` (both positive, in lowest terms) values are multiplied by."""

    num: int = 1
    den: int = 1

    @classmethod
    def of(cls, value: float | int | Fraction | Scale) -> Scale:
        """The scale of ``value``: a float is read as its shortest decimal (0.01 → 1/100). Raises ValueError
        for a value that is not finite and positive."""
        if isinstance(value, Scale):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
            raise ValueError(f"a scale must be a number, got {value!r}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"a scale must be finite, got {value!r}")
            exact = Fraction(repr(value))
        else:
            exact = Fraction(value)
        if exact <= 0:
            raise ValueError(f"a scale must be greater than 0, got {value!r}")
        return cls(exact.numerator, exact.denominator)

    @property
    def identity(self) -> bool:
        return self.num == self.den

    def __float__(self) -> float:
        return self.num / self.den

    def apply(self, value: float) -> float:
        """``value × num / den``, correctly rounded (the double nearest to the exact product)."""
        num, den = self.num, self.den
        if den == 1:
            if num == 1:
                return value
            if num <= _EXACT:
                return value * float(num)
        elif num == 1 and den <= _EXACT:
            return value / float(den)
        return _exact(value, num, den)

    def describe(self) -> str:
        """``× 1048576``, ``÷ 100``, ``× 5/2`` (for people)."""
        if self.den == 1:
            return f"× {self.num}"
        if self.num == 1:
            return f"÷ {self.den}"
        return f"× {self.num}/{self.den}"


def _exact(value: float, num: int, den: int) -> float:
    if value == 0.0 or not math.isfinite(value):
        return value * (num / den)     # ±0, ±Inf and NaN keep their sign and kind
    n, d = value.as_integer_ratio()
    try:
        return (n * num) / (d * den)   # int / int: Python rounds the exact quotient once, to nearest even
    except OverflowError:
        return math.copysign(math.inf, value)


IDENTITY = Scale(1, 1)

__all__ = ["IDENTITY", "Scale"]
