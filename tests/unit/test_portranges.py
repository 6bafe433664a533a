# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port-set arithmetic and the power-of-two split, against brute force on random sets."""

import pytest
from hypothesis import given, settings, strategies as st

from module_utils import portranges
from module_utils.errors import ValidationError

ranges = st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 3000)).map(
    lambda t: (t[0], min(65535, t[0] + t[1]))), max_size=5)


def ports(pairs):
    return set(p for a, b in pairs for p in range(a, b + 1))


@settings(max_examples=300, deadline=None)
@given(ranges)
def test_blocks_cover_exactly_the_range_with_aligned_power_of_two_blocks(pairs):
    pairs = portranges.normalize(pairs)
    blocks = portranges.blocks(pairs)
    covered = []
    for first, mask in blocks:
        count = (~mask & 0xFFFF) + 1
        assert count & (count - 1) == 0 and first % count == 0 and first & mask == first
        covered += [p for p in range(first, first + count) if p & mask == first]
    assert sorted(covered) == sorted(ports(pairs))  # no port twice, none missing, none extra
    # the fewest blocks: brute force, a greedy largest-aligned-block split is optimal for one range
    for first, last in pairs:
        mine = [b for b in blocks if first <= b[0] <= last]
        assert len(mine) == _fewest(first, last)


def _fewest(first, last):
    count, port = 0, first
    while port <= last:
        size = 1
        while port % (size * 2) == 0 and port + size * 2 - 1 <= last:
            size *= 2
        port += size
        count += 1
    return count


@settings(max_examples=300, deadline=None)
@given(ranges, ranges)
def test_set_arithmetic_matches_python_sets(a, b):
    a, b = portranges.normalize(a), portranges.normalize(b)
    assert ports(portranges.union(a, b)) == ports(a) | ports(b)
    assert ports(portranges.difference(a, b)) == ports(a) - ports(b)
    assert ports(portranges.intersection(a, b)) == ports(a) & ports(b)
    assert portranges.contains(a, b) == (ports(b) <= ports(a))
    assert portranges.parse("x", portranges.format_set(a)) == a


def test_known_blocks():
    expected = [(31000, 0xFFF8), (31008, 0xFFE0), (31040, 0xFFC0), (31104, 0xFF80), (31232, 0xFE00), (31744, 0xFF00)]
    assert portranges.blocks([(31000, 31999)]) == expected
    assert portranges.blocks([(32768, 33791)]) == [(32768, 0xFC00)]


@pytest.mark.parametrize("value,words", [
    ("10-", "not a port"), ("70000", "not a port (0-65535)"), ("20-10", "empty range"), (True, "not a port range"),
    ("a,b", "not a port"), ({"x": 1}, "not a port range"),
])
def test_bad_ranges_name_the_field(value, words):
    with pytest.raises(ValidationError) as err:
        portranges.parse("ports", value)
    assert err.value.field == "ports" and words in err.value.reason
