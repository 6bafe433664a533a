# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The assertion set every module passes, as a user would check it.

- check mode predicts the same ``changed`` as the real run and leaves the host identical;
- the real run reports a diff whose before and after differ;
- the second run reports ``changed=false`` and leaves the host identical;
- bad input fails with a message naming the field and leaves the host identical.
"""

import difflib

from .runner import run_module


def _differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), "%s/%s" % (path, key))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += _differences(x, y, "%s[%d]" % (path, i))
        return out
    if a == b:
        return []
    if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
        # a ruleset or a listing: show the lines that changed, not two truncated reprs
        lines = difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", lineterm="", n=2)
        return ["%s:\n    %s" % (path or "/", "\n    ".join(lines))]
    return ["%s: %r -> %r" % (path or "/", a, b)]


def assert_same(before, after, what):
    diffs = _differences(before, after)
    assert not diffs, "%s changed the host:\n  %s" % (what, "\n  ".join(d[:3000] for d in diffs[:20]))


def assert_converges(host, module, args, python, expect_change=True):
    """Run the whole set for one input; returns the real run's result."""
    before = host.snapshot()
    predicted = run_module(host, module, args, python, check=True, diff=True)
    assert not predicted.get("failed"), predicted.get("msg", predicted.raw)
    assert_same(before, host.snapshot(), "check mode")
    first = run_module(host, module, args, python, diff=True)
    assert not first.get("failed"), first.get("msg", first.raw)
    assert first["changed"] is expect_change, first
    assert predicted["changed"] is first["changed"], "check mode predicted changed=%s, real run %s" % (
        predicted["changed"], first["changed"])
    after = host.snapshot()
    if expect_change:
        assert first["diff"]["before"] != first["diff"]["after"], first["diff"]
        assert _differences(before, after), "changed=true but the host looks the same"
    else:
        assert_same(before, after, "a run that reported no change")
    second = run_module(host, module, args, python, diff=True)
    assert not second.get("failed"), second.get("msg", second.raw)
    assert second["changed"] is False, "second run changed: %s" % second
    assert_same(after, host.snapshot(), "the second run")
    recheck = run_module(host, module, args, python, check=True)
    assert recheck["changed"] is False, "check mode on a converged host predicts a change: %s" % recheck
    return first


def assert_rejected(host, module, args, python, field, reason=None):
    """Bad input: the task fails naming ``field`` (and ``reason``), and nothing changes."""
    before = host.snapshot()
    for check in (True, False):
        result = run_module(host, module, args, python, check=check)
        assert result.get("failed"), "accepted bad input %r: %s" % (args, result)
        assert field in result["msg"], "message does not name %r: %s" % (field, result["msg"])
        if reason:
            assert reason in result["msg"], "message does not say %r: %s" % (reason, result["msg"])
        assert_same(before, host.snapshot(), "a rejected task (check=%s)" % check)
    return result
