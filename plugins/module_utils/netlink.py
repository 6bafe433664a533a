# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netlink layer: pyroute2, imported once and guarded.

Supports Debian 12's python3-pyroute2 0.7.x and current PyPI releases (0.9.x):
only APIs that behave the same in both are used here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress

from . import nsutil, sched_fq

_PYROUTE2 = ("IPRoute", "NetlinkError", "PYROUTE2_IMPORT_ERROR")


def load():
    """Import pyroute2 (once), binding this module's IPRoute, NetlinkError and PYROUTE2_IMPORT_ERROR.

    Not at import time: the policy check that the controller runs (the filter plugins) imports the parts
    but never talks netlink, and pyroute2's import is the larger part of its cost. ``netlink.IPRoute``
    and the others load it on first use (the module's ``__getattr__``)."""
    if "PYROUTE2_IMPORT_ERROR" in globals():
        return
    try:
        from pyroute2 import IPRoute as iproute
        from pyroute2.netlink.exceptions import NetlinkError as netlink_error
        error = None
        sched_fq.register()  # pyroute2 has no fq plugin of its own
    except ImportError as exc:  # the front door reports it (missing_required_lib)
        iproute, error = None, exc

        class netlink_error(Exception):  # pylint: disable=invalid-name
            code = 0

    globals().update(IPRoute=iproute, NetlinkError=netlink_error, PYROUTE2_IMPORT_ERROR=error)


def __getattr__(name):
    if name in _PYROUTE2:
        load()
        return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


IFF_UP = 0x1
IFNAMSIZ = 16
RT_TABLE_MAIN = 254


def pyroute2_version():
    """The installed pyroute2 version, or None when it is missing."""
    load()
    if globals()["PYROUTE2_IMPORT_ERROR"] is not None:
        return None
    try:
        from importlib.metadata import version
        return version("pyroute2")
    except Exception:  # pylint: disable=broad-except
        import pyroute2
        return getattr(pyroute2, "__version__", "unknown")


def open_iproute(netns_path=None):
    """An IPRoute socket bound to the namespace at ``netns_path`` (None: ours).

    A netlink socket belongs to the namespace it was created in, so it keeps
    talking to that namespace after this thread has returned to its own.
    """
    load()
    with nsutil.entered(netns_path):
        return globals()["IPRoute"]()


def link_state(ipr, ifname=None, index=None):
    """A device as a plain dict (None when it does not exist)."""
    load()
    try:
        if index is not None:
            msgs = ipr.link("get", index=index)
        else:
            msgs = ipr.link("get", ifname=ifname)
    except globals()["NetlinkError"] as exc:
        if exc.code == 19:  # ENODEV
            return None
        raise
    if not msgs:
        return None
    msg = msgs[0]
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return {
        "index": msg["index"],
        "name": msg.get_attr("IFLA_IFNAME"),
        "kind": kind,
        "mtu": msg.get_attr("IFLA_MTU"),
        "mac": (msg.get_attr("IFLA_ADDRESS") or "").lower() or None,
        "link": msg.get_attr("IFLA_LINK"),
        "master": msg.get_attr("IFLA_MASTER") or 0,
        "up": bool(msg["flags"] & IFF_UP),
    }


def addresses(ipr, index):
    """Addresses on a device as interface objects, without IPv6 link-local ones."""
    found = []
    for msg in ipr.get_addr(index=index):
        if msg["index"] != index:
            continue
        addr = ipaddress.ip_interface("%s/%d" % (msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]))
        if addr.version == 6 and addr.ip.is_link_local:
            continue
        found.append(addr)
    return sorted(found, key=lambda a: (a.version, a))


def default_route(ipr, family):
    """(gateway, oif) of the main table's default route for a family, or None."""
    for msg in ipr.get_routes(family=family):
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        if msg["dst_len"] == 0 and table == RT_TABLE_MAIN and msg.get_attr("RTA_GATEWAY"):
            return msg.get_attr("RTA_GATEWAY"), msg.get_attr("RTA_OIF")
    return None


def errno_name(exc):
    code = getattr(exc, "code", None)
    return errno.errorcode.get(code, str(code)) if code else str(exc)
