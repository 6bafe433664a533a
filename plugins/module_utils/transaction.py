# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a plan as a unit: every step registers how to undo it.

Where the kernel offers no single transaction (netlink link, address and
route changes are separate requests), a failure part-way undoes the steps
already done, in reverse, so the host is left as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from .errors import ApplyError

# The units open in this process (innermost last): a part's transaction that lands hands its undo
# steps to the innermost unit, so a failure in a later part undoes this one too.
_UNITS = []


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
        keep_all(self._undo)
        self._undo = []
        return self.done


def keep(description, undo):
    """Hand ``undo`` of a change that has landed to the open unit (nothing when none is open)."""
    if _UNITS and undo is not None:
        _UNITS[-1]._undo.append((description, undo))  # pylint: disable=protected-access


def keep_all(undos):
    for description, undo in undos:
        keep(description, undo)


@contextlib.contextmanager
def unit(field):
    """Run the body's transactions as one: if the body raises, every change that landed in it is undone.

    Parts that apply without a Transaction (a file write, one nft batch) register their undo with
    ``keep``. Raises ApplyError naming ``field``, with the original failure and the rollback's result.
    """
    txn = Transaction()
    _UNITS.append(txn)
    try:
        yield txn
    except Exception as exc:
        _UNITS.pop()
        failed = txn.rollback()
        reason = "%s; %s" % (getattr(exc, "reason", None) or exc,
                             "rolled back everything this run had applied" if not failed
                             else "rolled back with errors: " + "; ".join(failed))
        raise ApplyError(getattr(exc, "field", None) or field, reason) from exc
    _UNITS.pop()
    keep_all(txn._undo)  # pylint: disable=protected-access
