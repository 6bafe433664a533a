# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract every part (netns, veth, qdisc, port_redirect, ephemeral_ports, port_mapper) keeps.

Each part's core module has:

* ``OPTIONS``: its option schema, once, as data: Ansible's argument_spec keys (``type``,
  ``required``, ``default``, ``choices``, ``elements``) plus ``bad``, values the part refuses (the
  generic preflight test gives each to the policy check and to the module, and both must refuse it
  naming the field). The module's argument_spec is ``argument_spec(OPTIONS)``; its documentation
  is checked against it by ansible-test; the host_network module's and role's specs are built from
  all parts' schemas (``plugins/modules/host_network.py``).
* ``spec(params, host=True, planned=None)``: the validated spec. With ``host=False`` it does no host
  I/O (no namespace or device lookup); a namespace in ``planned`` need not exist yet, so the controller runs the very same validation before any host
  changes; every refusal is a ValidationError naming the field.
* ``converge(spec, check_mode=False, planned=None)``: read the host's state, plan, and (unless
  ``check_mode``) apply with undo; returns the part's result: ``changed``, ``changes`` (sentences),
  ``diff`` (``before``/``after``) and part-specific keys. ``planned`` (a ``Planned``) tells check
  mode which namespaces and devices this run creates before the part: the part then plans against
  the state such a new object has, so check mode says exactly what the real run then does.
  Changes that land register their undo with ``transaction.keep`` (Transaction.run does it), so the
  host_network module undoes every part when a later one fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

ARGSPEC_KEYS = ("type", "required", "default", "choices", "elements", "options", "no_log", "aliases")


def argument_spec(options, drop=()):
    """Ansible's argument_spec for a schema (the data beyond Ansible's keys left out)."""
    out = {}
    for name, option in options.items():
        if name in drop:
            continue
        entry = dict((k, v) for k, v in option.items() if k in ARGSPEC_KEYS)
        if "options" in entry:
            entry["options"] = argument_spec(entry["options"])
        out[name] = entry
    return out


def module_params(params, options):
    """The module's parameters the part's ``spec`` takes (Ansible adds none we must drop today)."""
    return dict((k, v) for k, v in params.items() if k in options)


class Planned:
    """What the run being planned creates before the part now being planned (check mode).

    Namespaces by the path of their handle, devices by (namespace path or None for the module's
    own namespace, interface name).
    """

    def __init__(self):
        self.namespaces = set()
        self.devices = set()
        self.routes = []  # (namespace path, ip network, device): the connected routes of addresses it adds

    @staticmethod
    def _key(path):
        """One spelling per path: /var/run/netns/x and /run/netns/x are one handle where /var/run -> /run."""
        if not path:
            return None
        path = os.path.normpath(path)
        return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))

    def add_netns(self, path):
        self.namespaces.add(self._key(path))

    def add_device(self, netns_path, ifname):
        self.devices.add((self._key(netns_path), ifname))

    def add_route(self, netns_path, network, ifname):
        self.routes.append((self._key(netns_path), network, ifname))

    def route(self, netns_path, ip):
        """The device of the most specific connected route this run adds toward ``ip`` (None: none)."""
        best = None
        for where, network, ifname in self.routes:
            if where == self._key(netns_path) and network.version == ip.version and ip in network:
                if best is None or network.prefixlen > best[0].prefixlen:
                    best = (network, ifname)
        return best[1] if best else None

    def netns(self, path):
        """Whether the namespace at ``path`` does not exist yet and this run creates it."""
        return path is not None and self._key(path) in self.namespaces

    def device(self, netns_path, ifname):
        """Whether the device does not exist yet and this run creates it (also: in a namespace it creates)."""
        return self.netns(netns_path) or (self._key(netns_path), ifname) in self.devices


NOTHING_PLANNED = Planned()
