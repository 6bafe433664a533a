# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ephemeral ports state file is checked on read: a corrupt entry is an error naming it."""

import json
import os

import pytest

from module_utils import ephemeral_ports as ephemeral
from module_utils.errors import ValidationError


def _state(tmp_path, allocations):
    directory = tmp_path / "hostnet"
    directory.mkdir(mode=0o700)
    path = directory / "ephemeral-ports.json"
    path.write_text(json.dumps({"version": 1, "allocations": allocations}))
    return str(path)


def test_what_the_allocator_writes_reads_back(tmp_path):
    path = _state(tmp_path, {"c1": [4096, 5119], "c2": [8192, 12287], "c3": [1024, 1024]})
    assert ephemeral.StateFile(path).read() == {"c1": (4096, 5119), "c2": (8192, 12287), "c3": (1024, 1024)}


@pytest.mark.parametrize("allocations,entry,why", [
    ({"c1": [1, 99999999]}, 'allocations["c1"]', "not a range inside 1-65535"),
    ({"c1": [0, 0]}, 'allocations["c1"]', "not a range inside 1-65535"),
    ({"c1": [2048, 1024]}, 'allocations["c1"]', "not a range inside 1-65535"),
    ({"c1": [1000, 2023]}, 'allocations["c1"]', "not an aligned power-of-two block"),
    ({"c1": [1024, 2000]}, 'allocations["c1"]', "not an aligned power-of-two block"),
    ({"c1": [1024]}, 'allocations["c1"]', "not a [first, last] pair"),
    ({"c1": "1024-2047"}, 'allocations["c1"]', "not a [first, last] pair"),
    ({"c1": [1024.0, 2047]}, 'allocations["c1"]', "not a [first, last] pair"),
    ({"c1": [True, 1]}, 'allocations["c1"]', "not a [first, last] pair"),
    ({" ": [1024, 2047]}, 'allocations[" "]', "not a container id"),
    ({"x" * 256: [1024, 2047]}, 'allocations["xxx', "not a container id"),
    ({"c1": [1024, 2047], "c2": [1024, 1535]}, 'allocations["c1"]', "overlaps container c2's range"),
])
def test_a_corrupt_entry_is_refused_naming_the_file_and_the_entry(tmp_path, allocations, entry, why):
    path = _state(tmp_path, allocations)
    with pytest.raises(ValidationError) as err:
        ephemeral.StateFile(path).read()
    assert err.value.field == "state_file"
    assert err.value.reason.startswith("%s: %s" % (path, entry)) and why in err.value.reason, err.value.reason


def test_a_state_file_in_a_directory_others_can_write_is_refused(tmp_path):
    path = _state(tmp_path, {})
    os.chmod(os.path.dirname(path), 0o1777)
    with pytest.raises(ValidationError) as err:
        ephemeral.StateFile(path).read()
    assert err.value.field == "state_file" and "writable by others" in err.value.reason
