"""OpenMetrics family rules on a family's structure, checked once and kept as a ``Plan``.

The rules a finished OpenMetrics family must pass (see ``rules``) split into structural rules, which
depend only on the family's type, sample names and labels (grouping, ``le``/``quantile`` labels, bucket
order, which samples a histogram group has), and value rules. ``build_plan`` checks the structural rules
of a family once and records, as a ``Plan``, which samples each value rule applies to; a later scrape
whose family has the same structure only runs ``Plan.values_ok``: C-level ``map`` passes over the
family's values, no Python frame per sample. A plan never raises: when a rule fails, the caller runs the
reference per-sample pass (``FamilyRules.check_samples``), which names the first offending line, so
both ways accept and reject exactly the same families.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import itemgetter

from promotel.exposition.tokens import parse_value
from promotel.model import Exemplar, Labels

__all__ = ["MAX_VALUES", "Plan", "build_plan", "le_bound"]

# The most ``le`` and ``quantile`` texts remembered (each memo is cleared when it reaches this).
MAX_VALUES = 100_000
_INF = math.inf


def build_plan(typ: str, name: str, allowed: dict[str, str], names: tuple[str, ...],
               labs: tuple[Labels, ...], le_memo: dict[str, float], q_memo: dict[str, float]) -> Plan | None:
    """The structure of a family's samples (family ``name`` of type ``typ``, whose sample names map
    to their suffixes in ``allowed``), checked, or None if a structural rule fails (the reference
    then names it). Mirrors ``FamilyRules.check_samples`` and its histogram pass for samples
    without timestamps. ``le_memo`` and ``q_memo`` remember the valid ``le`` and ``quantile``
    texts (of the target, across scrapes)."""
    n = len(names)
    sfxs = tuple(map(allowed.__getitem__, names))
    is_hist = typ in ("histogram", "gaugehistogram")
    plan = Plan(typ, names, labs, sfxs,
                 ("_bucket",) if is_hist else ("_total",) if typ == "counter" else ())
    if typ == "info":
        # One group (no labels dropped, no timestamps): only the values are checked.
        plan.set_checks(one=range(n))
        return plan
    nonneg_int: list[int] = []     # bucket, _count, _gcount: non-negative integers
    nonneg: list[int] = []         # _total, _sum (and _gsum without negative buckets): >= 0, not NaN
    not_nan: list[int] = []        # _gsum with negative buckets
    not_neg: list[int] = []        # summary quantiles: not < 0 (NaN allowed)
    zero_one: list[int] = []       # stateset states
    cum_a: list[int] = []          # bucket i-1, bucket i of one group: cumulative
    cum_b: list[int] = []
    inf_b: list[int] = []          # the +Inf bucket and the _count of one group: equal
    inf_c: list[int] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    prev_key: tuple[str, ...] | None = None
    # The histogram state of the current group (the reference's ``state`` list).
    last_le: float | None = None
    last_b = -1
    count = -1
    has_sum = has_gsum = neg_b = False
    gsums: list[int] = []
    started = False
    b = 0.0
    for i in range(n):
        sfx = sfxs[i]
        fl = labs[i].flat
        key = fl
        if sfx == "_bucket":
            if len(fl) >= 2 and fl[-2] == "le":
                le = fl[-1]
                key = fl[:-2]
            else:
                got_le = labs[i].get("le")
                if got_le is None:
                    return None
                le = got_le
                key = _without(fl, "le")
            got_b = le_memo.get(le)
            if got_b is None:
                got_b = le_bound(le)
                if got_b is None:
                    return None
                if len(le_memo) >= MAX_VALUES:
                    le_memo.clear()
                le_memo[le] = got_b
            b = got_b
            nonneg_int.append(i)
        elif sfx == "":
            if typ == "summary":
                q = labs[i].get("quantile")
                if q is None:
                    return None
                if q not in q_memo:
                    qv = parse_value(q)
                    if qv is None or not (0.0 <= qv <= 1.0):
                        return None
                    if len(q_memo) >= MAX_VALUES:
                        q_memo.clear()
                    q_memo[q] = qv
                key = _without(fl, "quantile")
                not_neg.append(i)
            elif typ == "stateset":
                if name not in labs[i]:
                    return None
                key = _without(fl, name)
                zero_one.append(i)
        elif sfx == "_count" or sfx == "_gcount":
            nonneg_int.append(i)
        elif sfx == "_total" or sfx == "_sum":
            nonneg.append(i)
        if key != prev_key:
            # A new group, unless it is another order of the same pairs (label names are
            # unique, so with the names in the same order, other values are another group).
            if (prev_key is None or len(key) != len(prev_key) or key[0::2] == prev_key[0::2]
                    or _pair_set(key) != _pair_set(prev_key)):
                g = _pair_set(key)
                if g in seen:
                    return None                   # the group is not consecutive
                seen.add(g)
                if is_hist:
                    if started and not _hist_group_ok(last_le, count, has_sum, has_gsum, neg_b):
                        return None
                    if started:
                        if count >= 0:
                            inf_b.append(last_b)
                            inf_c.append(count)
                        (not_nan if neg_b else nonneg).extend(gsums)
                    started = True
                    last_le = None
                    last_b = count = -1
                    has_sum = has_gsum = neg_b = False
                    gsums = []
            prev_key = key
        if is_hist:
            if sfx == "_bucket":
                if b < 0:
                    neg_b = True
                if last_le is not None and b <= last_le:
                    return None                   # buckets out of "le" order
                if last_b >= 0:
                    cum_a.append(last_b)
                    cum_b.append(i)
                last_le = b
                last_b = i
            elif sfx == "_count" or sfx == "_gcount":
                count = i
            elif sfx == "_sum":
                has_sum = True
            elif sfx == "_gsum":
                has_gsum = True
                gsums.append(i)
    if is_hist and started:
        if not _hist_group_ok(last_le, count, has_sum, has_gsum, neg_b):
            return None
        if count >= 0:
            inf_b.append(last_b)
            inf_c.append(count)
        (not_nan if neg_b else nonneg).extend(gsums)
    plan.set_checks(nonneg_int=nonneg_int, nonneg=nonneg, not_nan=not_nan, not_neg=not_neg,
                    zero_one=zero_one, cum=(cum_a, cum_b), equal=(inf_b, inf_c))
    return plan


# Value predicates as bound C methods, so ``map`` runs them without Python frames.
_IS_INT = float.is_integer
_ZERO_LE = (0.0).__le__           # 0 <= v: False for negatives and NaN
_ZERO_GT = (0.0).__gt__           # 0 > v: True for negatives only
_ONE_EQ = (1.0).__eq__
_ZERO_ONE = frozenset((0.0, 1.0)).__contains__
_FLOAT_LE = float.__le__
_Picker = Callable[[tuple[float, ...]], tuple[float, ...]]


def _picker(idx: Sequence[int], n: int) -> _Picker | None:
    """A C-level function picking the values at ``idx`` (as a tuple) out of a family's values."""
    if not idx:
        return None
    if len(idx) == n:
        return _identity                  # idx covers every sample, in order
    if len(idx) == 1:
        only = idx[0]
        return lambda vals: (vals[only],)
    got: _Picker = itemgetter(*idx)
    return got


def _identity(vals: tuple[float, ...]) -> tuple[float, ...]:
    return vals


def _without(flat: tuple[str, ...], key: str) -> tuple[str, ...]:
    out: list[str] = []
    for i in range(0, len(flat), 2):
        if flat[i] != key:
            out.append(flat[i])
            out.append(flat[i + 1])
    return tuple(out)


def _pair_set(flat: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    """A label set as a value that ignores order (what ``Labels`` equality compares)."""
    return frozenset(zip(flat[0::2], flat[1::2]))


def le_bound(le: str) -> float | None:
    """A bucket's ``le`` as the reference accepts it (a number, ``+Inf`` or ``-Inf``; no NaN)."""
    if le == "NaN":
        return None
    b = parse_value(le)
    if b is None or math.isnan(b) or (b - b != 0.0 and le not in ("+Inf", "-Inf")):
        return None
    return b


def _hist_group_ok(last_le: float | None, count: int, has_sum: bool, has_gsum: bool,
                   neg_b: bool) -> bool:
    """The structural part of the reference's end-of-group histogram check."""
    if last_le != _INF:
        return False
    if (has_sum or has_gsum) and count < 0:
        return False
    if count >= 0 and not (has_sum or has_gsum):
        return False
    return not (neg_b and has_sum)


class Plan:
    """A family's structure that passed the structural rules, and the value checks it implies.

    Valid for a later scrape whose family has the same type, sample names and labels (compared
    as tuples: the cached strings and ``Labels`` are the same objects, so this is a pointer walk)
    and no timestamps."""

    __slots__ = ("cum", "equal", "ex_sfx", "labels", "names", "nonneg", "nonneg_int", "not_nan",
                 "not_neg", "one", "sfxs", "type", "zero_one")

    def __init__(self, typ: str, names: tuple[str, ...], labels: tuple[Labels, ...],
                 sfxs: tuple[str, ...], ex_sfx: tuple[str, ...]) -> None:
        self.type = typ
        self.names = names
        self.labels = labels
        self.sfxs = sfxs
        self.ex_sfx = ex_sfx
        self.nonneg_int: _Picker | None = None
        self.nonneg: _Picker | None = None
        self.not_nan: _Picker | None = None
        self.not_neg: _Picker | None = None
        self.zero_one: _Picker | None = None
        self.one: _Picker | None = None
        self.cum: tuple[_Picker, _Picker] | None = None
        self.equal: tuple[_Picker, _Picker] | None = None

    def set_checks(self, *, nonneg_int: Sequence[int] = (), nonneg: Sequence[int] = (),
                   not_nan: Sequence[int] = (), not_neg: Sequence[int] = (),
                   zero_one: Sequence[int] = (), one: Sequence[int] = (),
                   cum: tuple[Sequence[int], Sequence[int]] = ((), ()),
                   equal: tuple[Sequence[int], Sequence[int]] = ((), ())) -> None:
        n = len(self.names)
        self.nonneg_int = _picker(nonneg_int, n)
        self.nonneg = _picker(nonneg, n)
        self.not_nan = _picker(not_nan, n)
        self.not_neg = _picker(not_neg, n)
        self.zero_one = _picker(zero_one, n)
        self.one = _picker(one, n)
        a, b = _picker(cum[0], n), _picker(cum[1], n)
        self.cum = (a, b) if a is not None and b is not None else None
        a, b = _picker(equal[0], n), _picker(equal[1], n)
        self.equal = (a, b) if a is not None and b is not None else None

    def values_ok(self, vals: tuple[float, ...]) -> bool:
        """The reference's value rules, for this structure. Values are always ``float``."""
        pick = self.nonneg_int
        if pick is not None:
            v = pick(vals)
            if not all(map(_IS_INT, v)) or any(map(_ZERO_GT, v)):
                return False
        pick = self.nonneg
        if pick is not None and not all(map(_ZERO_LE, pick(vals))):
            return False
        pick = self.not_nan
        if pick is not None:
            v = pick(vals)
            if not all(map(float.__eq__, v, v)):
                return False
        pick = self.not_neg
        if pick is not None and any(map(_ZERO_GT, pick(vals))):
            return False
        pick = self.zero_one
        if pick is not None and not all(map(_ZERO_ONE, pick(vals))):
            return False
        pick = self.one
        if pick is not None and not all(map(_ONE_EQ, pick(vals))):
            return False
        if self.cum is not None:
            a, b = self.cum
            if not all(map(_FLOAT_LE, a(vals), b(vals))):
                return False
        if self.equal is not None:
            # Both sides passed the integer check above, so no NaN: tuple equality is exact.
            a, b = self.equal
            if a(vals) != b(vals):
                return False
        return True

    def exemplars_ok(self, exs: tuple[Exemplar | None, ...]) -> bool:
        """Only counter ``_total`` samples and histogram buckets may carry exemplars."""
        sfxs = self.sfxs
        ok = self.ex_sfx
        return all(sfxs[i] in ok for i, e in enumerate(exs) if e is not None)
