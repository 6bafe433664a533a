# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fq qdisc (sch_fq) for pyroute2, which has no plugin for it (0.7 and 0.9 alike).

pyroute2 finds a qdisc kind's encoder and decoder in one dict, ``pyroute2.netlink.rtnl.tcmsg.plugins``:
``IPRoute.tc()`` asks it for ``parent`` and ``get_parameters`` (0.7 in ``tc()``, 0.9 in its tc request
filter) and the tcmsg decoder for the ``options`` class of TCA_OPTIONS, in both versions. ``register()``
puts ours there under ``fq``. Keyword arguments are ``fq_<attribute>`` for TCA_FQ_<ATTRIBUTE> (for
example ``fq_plimit=1000``, ``fq_flow_max_rate=1250000``); the kernel reads them all back as sent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from types import SimpleNamespace


# include/uapi/linux/pkt_sched.h, in order (PRIOMAP and WEIGHTS since Linux 6.9)
ATTRIBUTES = (
    ("TCA_FQ_UNSPEC", "none"),
    ("TCA_FQ_PLIMIT", "uint32"),
    ("TCA_FQ_FLOW_PLIMIT", "uint32"),
    ("TCA_FQ_QUANTUM", "uint32"),
    ("TCA_FQ_INITIAL_QUANTUM", "uint32"),
    ("TCA_FQ_RATE_ENABLE", "uint32"),
    ("TCA_FQ_FLOW_DEFAULT_RATE", "uint32"),
    ("TCA_FQ_FLOW_MAX_RATE", "uint32"),
    ("TCA_FQ_BUCKETS_LOG", "uint32"),
    ("TCA_FQ_FLOW_REFILL_DELAY", "uint32"),
    ("TCA_FQ_ORPHAN_MASK", "uint32"),
    ("TCA_FQ_LOW_RATE_THRESHOLD", "uint32"),
    ("TCA_FQ_CE_THRESHOLD", "uint32"),
    ("TCA_FQ_TIMER_SLACK", "uint32"),
    ("TCA_FQ_HORIZON", "uint32"),
    ("TCA_FQ_HORIZON_DROP", "uint8"),
    ("TCA_FQ_PRIOMAP", "hex"),
    ("TCA_FQ_WEIGHTS", "hex"),
)
_NAMES = dict((name[len("TCA_FQ_"):].lower(), name) for name, _kind in ATTRIBUTES[1:])
# what the kernel reports as the per-flow maximum rate when there is none (~0U)
UNLIMITED_RATE = 2 ** 32 - 1


def get_parameters(kwarg):
    """TCA_OPTIONS from the ``fq_*`` keyword arguments (0.9 passes the whole request: the rest is ignored)."""
    attrs = []
    for key in sorted(kwarg):
        if key.startswith("fq_") and kwarg[key] is not None:
            name = key[len("fq_"):]
            if name not in _NAMES:
                raise ValueError("fq has no option %r (known: %s)" % (name, ", ".join(sorted(_NAMES))))
            attrs.append([_NAMES[name], kwarg[key]])
    return {"attrs": attrs}


_PLUGIN = {}


def register():
    """Make ``fq`` known to pyroute2 (ours also where a later pyroute2 brings its own: same arguments
    on every version); returns the plugin, or None without pyroute2 (netlink.py reports that). pyroute2
    is imported here, not when this module is: the controller's policy check never loads it."""
    try:
        from pyroute2.netlink import nla
        from pyroute2.netlink.rtnl import TC_H_ROOT
        from pyroute2.netlink.rtnl.tcmsg import plugins
    except ImportError:
        return None
    if "fq" not in _PLUGIN:
        class FqOptions(nla):
            """TCA_OPTIONS of an fq qdisc."""

            nla_map = ATTRIBUTES

        _PLUGIN["fq"] = SimpleNamespace(parent=TC_H_ROOT, get_parameters=get_parameters, options=FqOptions)
    plugins["fq"] = _PLUGIN["fq"]
    return _PLUGIN["fq"]
