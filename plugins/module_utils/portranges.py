# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port sets written as range strings ("31000-31999,32000"), their arithmetic, and Mesos' split of
a range into power-of-two aligned blocks (what a u32 value/mask filter can match in one rule).

A port set is kept as a sorted list of disjoint, non-adjacent inclusive ``(first, last)`` pairs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from .errors import ValidationError

_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse(field, value, low=0):
    """A port set from "a-b,c", a list of such strings / ints / [first, last] pairs, or an int."""
    if isinstance(value, bool):
        raise ValidationError(field, "%r is not a port range" % (value,))
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [part for part in value.replace(" ", "").split(",") if part] if value.strip() else []
        if value.strip() and not items:
            raise ValidationError(field, "%r is not a port range like 31000-31999" % (value,))
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValidationError(field, "%r is not a port range like 31000-31999" % (value,))
    pairs = []
    for item in items:
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(_is_int(i) for i in item):
            first, last = item
        elif _is_int(item):
            first = last = item
        elif isinstance(item, str) and "," in item:
            pairs += parse(field, item, low)
            continue
        elif isinstance(item, str) and _RANGE_RE.match(item):
            match = _RANGE_RE.match(item)
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
        else:
            raise ValidationError(field, "%r is not a port or a port range like 31000-31999" % (item,))
        for port in (first, last):
            if not low <= port <= 65535:
                raise ValidationError(field, "%d is not a port (%d-65535)" % (port, low))
        if first > last:
            raise ValidationError(field, "%d-%d is an empty range (%d > %d)" % (first, last, first, last))
        pairs.append((first, last))
    return normalize(pairs)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def normalize(pairs):
    """Sorted, merged (overlapping and adjacent ranges joined)."""
    out = []
    for first, last in sorted(pairs):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def format_set(pairs):
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in pairs)


def union(a, b):
    return normalize(list(a) + list(b))


def intersection(a, b):
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        first, last = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if first <= last:
            out.append((first, last))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def difference(a, b):
    """Ports of ``a`` not in ``b``."""
    out = []
    for first, last in a:
        start = first
        for bfirst, blast in b:
            if blast < start or bfirst > last:
                continue
            if bfirst > start:
                out.append((start, bfirst - 1))
            start = blast + 1
            if start > last:
                break
        if start <= last:
            out.append((start, last))
    return out


def contains(outer, inner):
    """Every port of ``inner`` is in ``outer``."""
    return not difference(inner, outer)


def size(pairs):
    return sum(last - first + 1 for first, last in pairs)


def blocks(pairs):
    """Each range as the fewest power-of-two sized, aligned blocks: [(first, mask)] where a port p is in
    the block when ``p & mask == first`` (Mesos' getPortRanges, for u32 value/mask matches)."""
    out = []
    for first, last in pairs:
        port = first
        while port <= last:
            size_bits = 0
            # grow while the block stays aligned and inside the range
            while size_bits < 16 and port % (1 << (size_bits + 1)) == 0 and port + (1 << (size_bits + 1)) - 1 <= last:
                size_bits += 1
            out.append((port, 0xFFFF & ~((1 << size_bits) - 1)))
            port += 1 << size_bits
    return out


def is_aligned_power_of_two(pair):
    first, last = pair
    count = last - first + 1
    return count & (count - 1) == 0 and first % count == 0
