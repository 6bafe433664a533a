# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised by the core library.

Every error names the input it is about (``field``) so that a front door
(an Ansible module, the watcher, the CNI plugin) can show the user exactly
which value to fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class HostnetError(Exception):
    """A failure the user can act on: ``field`` names the input, ``reason`` says why."""

    def __init__(self, field, reason):
        self.field = field
        self.reason = reason
        super(HostnetError, self).__init__("%s: %s" % (field, reason) if field else reason)


class ValidationError(HostnetError):
    """Bad input, detected before anything is changed."""


class ApplyError(HostnetError):
    """Applying a plan failed; the changes already made were rolled back."""
