# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a plan as a unit: every step registers how to undo it.

Where the kernel offers no single transaction (netlink link, address and
route changes are separate requests), a failure part-way undoes the steps
already done, in reverse, so the host is left as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .errors import ApplyError


class Transaction:
    def __init__(self):
        self._undo = []
        self.done = []
        self.current = None

    def step(self, description, do, undo=None):
        """Run ``do``; remember ``undo`` so a later failure can revert it."""
        self.current = description
        do()
        self.current = None
        self.done.append(description)
        if undo is not None:
            self._undo.append((description, undo))

    def rollback(self):
        """Undo completed steps in reverse; returns the undo failures (if any)."""
        failures = []
        while self._undo:
            description, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # pylint: disable=broad-except
                failures.append("%s: %s" % (description, exc))
        return failures

    def run(self, field, steps):
        """Run ``steps`` (callables taking this transaction); all land or none.

        Raises ApplyError naming ``field`` with the failing step and the
        result of the rollback.
        """
        try:
            for step in steps:
                step(self)
        except Exception as exc:
            failed = self.rollback()
            where = "%s failed: " % self.current if self.current else ""
            reason = "%s%s; rolled back %s" % (
                where, exc, "cleanly" if not failed else "with errors: " + "; ".join(failed))
            raise ApplyError(field, reason) from exc
        return self.done
