# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from module_utils.errors import ApplyError
from module_utils.transaction import Transaction


def test_all_steps_land():
    state = []
    done = Transaction().run("x", [lambda t, i=i: t.step("add %d" % i, lambda i=i: state.append(i), state.pop)
                                   for i in range(3)])
    assert state == [0, 1, 2] and done == ["add 0", "add 1", "add 2"]


def test_failure_undoes_completed_steps_in_reverse_and_names_the_step():
    state, undone = [], []

    def boom():
        raise OSError(17, "File exists")

    steps = [lambda t: t.step("first", lambda: state.append(1), lambda: undone.append("first")),
             lambda t: t.step("second", lambda: state.append(2), lambda: undone.append("second")),
             lambda t: t.step("third", boom, lambda: undone.append("third"))]
    with pytest.raises(ApplyError) as err:
        Transaction().run("veth", steps)
    assert undone == ["second", "first"]
    assert err.value.field == "veth"
    assert "third failed: [Errno 17] File exists; rolled back cleanly" in str(err.value)


def test_failed_undo_is_reported():
    def bad_undo():
        raise RuntimeError("cannot undo")

    def boom():
        raise ValueError("nope")

    with pytest.raises(ApplyError, match="rolled back with errors: first: cannot undo"):
        Transaction().run("x", [lambda t: t.step("first", lambda: None, bad_undo),
                                lambda t: t.step("second", boom)])
