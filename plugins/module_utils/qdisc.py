# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traffic control: the root (or ingress) qdisc of one device, declaratively.

What Mesos' port_mapping isolator sets up on a container's veth, as a spec:

- ``htb``: a root htb whose default class carries the rate limit (rate, ceil, burst), with a leaf
  qdisc under that class: ``fq_codel`` (bloat reduction), ``pfifo`` or none;
- ``tbf``: a token bucket (rate, burst, latency);
- ``fq_codel`` or ``pfifo`` alone at the root;
- ``cake``: shaping (``rate``, its bandwidth) and AQM (``target``, ``interval``) in one qdisc;
- ``fq``: per-flow fair queueing with pacing (``rate``, its per-flow maximum; ``limit``);
- ``ingress``: the ingress qdisc that tc filters (port_redirect) hang on.

Idempotence is decided in the kernel's own units: the plan compares what the kernel reports with
what it would store for the spec. Rates are bytes per second, exact; htb and tbf bursts become
scheduler ticks (computed as pyroute2 and tc compute them, so they read back exactly); codel
times (fq_codel ``target``/``interval``) are kept in 1024 ns units and read back short (5ms as
4999us); cake's times, cake's bandwidth and fq's limit and maximum rate read back as sent. An
option the task does not give is not compared. fq_codel cannot change ``flows`` in place: a
different ``flows`` replaces that qdisc in one request, like a change of kind; cake and fq change
everything we manage in place.

A new root qdisc is grafted in one request that replaces the old one (it gets handle 1: or 2:,
whichever the old one does not use), so the device is never without a qdisc. If a later step of
the same plan fails, the old root is put back from what was read before.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import math
import os
import re
from fractions import Fraction

from . import contract, netlink, nsutil, sched_fq, transaction, validate
from .errors import ApplyError, ValidationError

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000
CLASS_MINOR = 0x10
LEAF_HANDLE = 0x00100000  # 10:
LEAF_HANDLE_ALT = 0x00200000  # 20:, for a leaf that replaces the one at 10:

ROOT_KINDS = ("htb", "tbf", "fq_codel", "pfifo", "cake", "fq")
KINDS = ROOT_KINDS + ("ingress",)
LEAVES = ("fq_codel", "pfifo", "none")
# what pyroute2 0.7 can put in the 32-bit rate fields (about 34.3 Gbit/s)
MAX_RATE = 2 ** 32 - 1
# the rate table pyroute2 and tc send has the send time of up to 2048 bytes in 32-bit ticks: at
# 7 bytes/s that overflows
MIN_RATE = 8
FQ_CODEL_OPTIONS = ("flows", "target", "interval", "ecn", "limit")
# the kernel's attribute behind each option we manage of cake and fq (all read back exactly as sent)
CAKE_ATTRS = (("rate", "TCA_CAKE_BASE_RATE64"), ("interval", "TCA_CAKE_RTT"), ("target", "TCA_CAKE_TARGET"))
FQ_ATTRS = (("limit", "TCA_FQ_PLIMIT"), ("rate", "TCA_FQ_FLOW_MAX_RATE"))
# what the kernel reports for ``rate: unlimited``: no cake bandwidth (0), no fq per-flow maximum (~0U)
UNLIMITED = {"cake": 0, "fq": sched_fq.UNLIMITED_RATE}

# rate units, as tc(8) spells them, in bits per second (bps and friends are bytes per second)
_RATE_BITS = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9, "tbit": 10 ** 12,
              "kibit": 2 ** 10, "mibit": 2 ** 20, "gibit": 2 ** 30, "tibit": 2 ** 40,
              "bps": 8, "kbps": 8 * 10 ** 3, "mbps": 8 * 10 ** 6, "gbps": 8 * 10 ** 9, "tbps": 8 * 10 ** 12,
              "kibps": 8 * 2 ** 10, "mibps": 8 * 2 ** 20, "gibps": 8 * 2 ** 30, "tibps": 8 * 2 ** 40}
_SIZE_BYTES = {"b": 1, "k": 2 ** 10, "kb": 2 ** 10, "kib": 2 ** 10, "m": 2 ** 20, "mb": 2 ** 20, "mib": 2 ** 20,
               "g": 2 ** 30, "gb": 2 ** 30, "gib": 2 ** 30}
_TIME_USEC = {"us": 1, "usec": 1, "ms": 1000, "msec": 1000, "s": 10 ** 6, "sec": 10 ** 6}
_MAX_DIGITS = 1000  # far beyond any limit, well below the 4300 digits Python converts
_NUMBER_UNIT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)\Z")


# The module's options, once (contract.py): Ansible's argument_spec keys, and ``bad``: values a user
# could plausibly give that the spec refuses, naming the option.
OPTIONS = {
    "device": {"type": "str", "required": True, "bad": ["veth:web", "a-device-name-too-long", "eth 0"]},
    "kind": {"type": "str", "choices": list(KINDS), "bad": ["fq-codel", "HTB"]},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"], "bad": ["enabled"]},
    "netns": {"type": "str", "bad": ["web/app", "..", ""]},
    "netns_pid": {"type": "int", "bad": [0, -1, "init"]},
    "netns_dir": {"type": "path", "default": nsutil.DEFAULT_NETNS_DIR, "bad": ["run/netns"]},
    "rate": {"type": "str", "bad": ["10 lightyears", "10mbit/s", "40gbit"]},
    "rate_per_cpu": {"type": "str", "bad": ["5 mbit per cpu", "0"], "bad_with": {"rate": None, "cpus": 2}},
    "cpus": {"type": "float", "bad": [0, -2, "two"]},
    "min_rate": {"type": "str", "bad": ["1 mbit", "-1"]},
    "max_rate": {"type": "str", "bad": ["1gb/s", "fast"]},
    "ceil": {"type": "str", "bad": ["1kbit", "12 mbit"]},
    "burst": {"type": "str", "bad": ["32 kilobytes", "0"]},
    "cburst": {"type": "str", "bad": ["1 frame", "-1"]},
    "latency": {"type": "str", "bad": ["5 minutes", "0ms"]},
    "leaf": {"type": "str", "choices": list(LEAVES), "bad": ["codel", "sfq"]},
    "flows": {"type": "int", "bad": [0, 100000, "many"]},
    "target": {"type": "str", "bad": ["5 ms", "5min"]},
    "interval": {"type": "str", "bad": ["100 ms", "1h"]},
    "ecn": {"type": "bool", "bad": ["maybe", 2]},
    "limit": {"type": "int", "bad": [0, -5, "1000 packets"]},
}


def _number_with_unit(field, value, units, what, example):
    """(number, unit) with the number as an exact Fraction: a float would overflow to inf on 400 digits."""
    if isinstance(value, bool) or value is None:
        raise ValidationError(field, "%r is not a %s like %s" % (value, what, example))
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(field, "%r is not a %s like %s" % (value, what, example))
        number, unit = Fraction(value), ""
    else:
        match = _NUMBER_UNIT.match(str(value).strip())
        if not match:
            raise ValidationError(field, "%r is not a %s like %s" % (value, what, example))
        if len(match.group(1)) > _MAX_DIGITS:
            # beyond every limit anyway; Python refuses to convert more than 4300 digits (ValueError)
            raise ValidationError(field, "%s... has %d digits; a %s has at most %d" % (
                match.group(1)[:20], len(match.group(1)), what, _MAX_DIGITS))
        number, unit = Fraction(match.group(1)), match.group(2).lower()
        if unit and unit not in units:
            raise ValidationError(field, "%r: unknown unit %r (use one of %s)"
                                  % (value, match.group(2), ", ".join(sorted(units, key=lambda u: (units[u], u)))))
    if number < 0:
        raise ValidationError(field, "%r is negative" % (value,))
    return number, unit


def parse_rate(field, value):
    """Bytes per second from ``10mbit``, ``1.5gbit``, ``125kbps`` or a number of bytes per second."""
    number, unit = _number_with_unit(field, value, _RATE_BITS, "rate", "10mbit, 1.5gbit or 1250000 (bytes/s)")
    rate = round(number * _RATE_BITS[unit] / 8) if unit else round(number)
    if rate < 1:
        raise ValidationError(field, "%r is below one byte per second" % (value,))
    if rate > MAX_RATE:
        raise ValidationError(field, "%r is above the largest supported rate, %d bytes/s (34.3 Gbit/s)"
                              % (value, MAX_RATE))
    return rate


def parse_size(field, value):
    """Bytes from ``32kb``, ``1500`` or ``1m`` (k, m, g are binary, as in tc)."""
    number, unit = _number_with_unit(field, value, _SIZE_BYTES, "size", "32kb or 15140 (bytes)")
    size = round(number * _SIZE_BYTES[unit]) if unit else round(number)
    if size < 1 or size > MAX_RATE:
        raise ValidationError(field, "%r is not between 1 byte and 4 GiB" % (value,))
    return size


def parse_time(field, value):
    """Microseconds from ``5ms``, ``100us``, ``1s`` or a number of microseconds."""
    number, unit = _number_with_unit(field, value, _TIME_USEC, "time", "5ms or 100us")
    usec = round(number * _TIME_USEC[unit]) if unit else round(number)
    if usec < 1 or usec > MAX_RATE:
        raise ValidationError(field, "%r is not between 1us and 4294s" % (value,))
    return usec


def format_rate(rate):
    """Bytes per second as tc would print them (``10Mbit``), exact when a unit divides evenly."""
    bits = rate * 8
    for unit, scale in (("Gbit", 10 ** 9), ("Mbit", 10 ** 6), ("Kbit", 10 ** 3)):
        if bits % scale == 0:
            return "%d%s" % (bits // scale, unit)
    return "%dbit" % bits


# Scheduler ticks per microsecond, as pyroute2 and tc compute them from /proc/net/psched
# (t2us / us2t * clock_res / 10^6). Current kernels all report "000003e8 00000040 000f4240 ..." there
# (1000 / 64 * 1: a tick is 1 << PSCHED_SHIFT = 64 ns; seen on Debian's 6.1 and 6.12 and on 6.18), so
# the spec is validated with this value everywhere, the controller included, without reading the
# host; ``converge`` checks on the host that its kernel reports the same (``check_psched``).
TICK_IN_USEC = 15.625


def psched_tick_in_usec(path="/proc/net/psched"):
    """The running kernel's scheduler ticks per microsecond (None when it cannot be read)."""
    try:
        with open(path) as f:
            t2us, us2t, clock_res = [int(x, 16) for x in f.read().split()[:3]]
        return float(t2us) / us2t * (float(clock_res) / 1000000)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def check_psched(path="/proc/net/psched"):
    """Refuse a kernel whose scheduler clock is not the one the spec's bursts were computed for: a
    burst would be sent in other units than compared, and no run would ever be idempotent."""
    found = psched_tick_in_usec(path)
    if found is not None and found != TICK_IN_USEC:
        raise ValidationError("kind", "this kernel counts %s scheduler ticks per microsecond (%s); bursts are "
                              "computed for %s, what current kernels report" % (found, path, TICK_IN_USEC))


MAX_U32 = 2 ** 32 - 1
# tbf keeps its buffer in nanoseconds, capped at 2^32 - 1 (4.29 s), which is this many ticks
TBF_MAX_BUFFER_TICKS = MAX_U32 // 64


def xmit_ticks(rate, size):
    """The ticks the kernel stores for sending ``size`` bytes at ``rate`` bytes/s: pyroute2's
    ``calc_xmittime``, float for float, so the value read back compares exactly."""
    return int(int(1000000 * (float(size) / rate)) * TICK_IN_USEC)


def ticks_to_bytes(ticks, rate):
    """A burst in bytes, as shown to the user, from the ticks the kernel reports."""
    return int(round(ticks / TICK_IN_USEC * rate / 1e6)) if rate else 0


def largest_burst(rate, max_ticks):
    """The largest burst in bytes whose send time at ``rate`` still fits in ``max_ticks``."""
    low, high = 1, max(1, rate * (max_ticks // int(TICK_IN_USEC) + 2) // 1000000 + 2)
    while low < high:  # xmit_ticks is monotonic in size
        mid = (low + high + 1) // 2
        if xmit_ticks(rate, mid) <= max_ticks:
            low = mid
        else:
            high = mid - 1
    return low


def codel_readback(usec):
    """What the kernel reports for a codel time of ``usec``: it keeps 1024 ns units (5ms reads 4999us)."""
    return ((usec * 1000) >> 10 << 10) // 1000


def codel_usec_for(readback):
    """A time in microseconds that the kernel reports back as ``readback`` (to put a qdisc back exactly)."""
    units = -(-readback * 1000 // 1024)
    return -(-units * 1024 // 1000)


def tbf_max_size(rate, burst):
    """The largest packet tbf passes, as the kernel derives it from the buffer time (0: it refuses the tbf)."""
    return min(xmit_ticks(rate, burst) * 64, MAX_U32) * rate // 1000000000


def tbf_limit(rate, latency, burst):
    """tbf's queue limit in bytes for ``latency`` microseconds, as pyroute2 computes it from a latency."""
    return int(rate * float(latency) / 1000000 + burst)


def default_burst(rate, max_ticks=MAX_U32):
    """What the rate sends in 10 ms, at least ten full-size Ethernet frames, at most what the
    kernel's tick field holds at that rate (a few bytes at 8 bit/s)."""
    return min(max(rate // 100, 15140), largest_burst(rate, max_ticks))


def _burst(field, value, rate, max_ticks, what):
    """A burst that fits the kernel's tick field at ``rate``."""
    if value is None:
        return default_burst(rate, max_ticks)
    size = parse_size(field, value)
    if max_ticks == TBF_MAX_BUFFER_TICKS and tbf_max_size(rate, size) < 1:
        low, high = size, size + rate // 1000000 + 64  # tbf_max_size grows with the burst
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if tbf_max_size(rate, mid) >= 1 else (mid + 1, high)
        smallest = low
        raise ValidationError(field, "%d bytes at %s is less than one byte once the kernel keeps it as time "
                              "(it refuses that); give at least %d" % (size, format_rate(rate), smallest))
    if xmit_ticks(rate, size) > max_ticks:
        raise ValidationError(field, "%d bytes take %.1f s at %s; %s holds at most %.2f s (largest burst at this "
                              "rate: %d bytes)" % (size, size / float(rate), format_rate(rate), what,
                                                   max_ticks / TICK_IN_USEC / 1e6, largest_burst(rate, max_ticks)))
    return size


def netns_path(netns, netns_pid, netns_dir):
    """The handle path of the namespace the options name (None: the module's own), checked without the host."""
    if netns_dir is None:
        netns_dir = nsutil.DEFAULT_NETNS_DIR
    if not isinstance(netns_dir, str) or not netns_dir.startswith("/") or "\x00" in netns_dir:
        raise ValidationError("netns_dir", "%r is not an absolute path (where `ip netns` keeps its handles, "
                                           "like /var/run/netns)" % (netns_dir,))
    if netns_pid is not None:
        if isinstance(netns_pid, bool) or not isinstance(netns_pid, int) or netns_pid <= 0:
            raise ValidationError("netns_pid", "%r is not a process id" % (netns_pid,))
        return "/proc/%d/ns/net" % netns_pid
    if netns is None:
        return None
    if not isinstance(netns, str):
        raise ValidationError("netns", "%r is not a namespace name or the absolute path of its handle" % (netns,))
    if netns.startswith("/"):
        if "\x00" in netns:
            raise ValidationError("netns", "%r is not a path" % (netns,))
        return netns
    nsutil.check_netns_name("netns", netns)
    return os.path.join(netns_dir, netns)


class QdiscSpec:
    """One device's root or ingress qdisc, validated; every error names its field."""

    def __init__(self, device, kind=None, state="present", netns=None, netns_pid=None,
                 netns_dir=nsutil.DEFAULT_NETNS_DIR, rate=None, rate_per_cpu=None, cpus=None, min_rate=None,
                 max_rate=None, ceil=None, burst=None, cburst=None, latency=None, leaf=None, flows=None,
                 target=None, interval=None, ecn=None, limit=None, host=True, planned=None):
        """``host=False``: every check but the host's (no namespace lookup); a namespace ``planned``
        creates need not exist yet."""
        if state not in ("present", "absent"):
            raise ValidationError("state", "%r is not one of present, absent" % (state,))
        self.state = state
        self.device = validate.ifname("device", device)
        if kind is not None and kind not in KINDS:
            raise ValidationError("kind", "%r is not one of %s" % (kind, ", ".join(KINDS)))
        if state == "present" and kind is None:
            raise ValidationError("kind", "required with state=present")
        self.kind = kind
        self.ingress = kind == "ingress"
        if netns is not None and netns_pid is not None:
            raise ValidationError("netns", "give either netns or netns_pid, not both")
        netns_dir = nsutil.DEFAULT_NETNS_DIR if netns_dir is None else netns_dir
        self.netns = netns_path(netns, netns_pid, netns_dir)
        self.netns_label = netns if netns is not None else ("pid %d" % netns_pid if netns_pid else "(current)")
        if host and not (planned or contract.NOTHING_PLANNED).netns(self.netns):
            self.netns = nsutil.resolve_netns("netns_pid" if netns_pid is not None else "netns",
                                              name=netns, pid=netns_pid, netns_dir=netns_dir)
        given = dict(rate=rate, rate_per_cpu=rate_per_cpu, cpus=cpus, min_rate=min_rate, max_rate=max_rate,
                     ceil=ceil, burst=burst, cburst=cburst, latency=latency, leaf=leaf, flows=flows,
                     target=target, interval=interval, ecn=ecn, limit=limit)
        allowed = {"htb": ("rate", "rate_per_cpu", "cpus", "min_rate", "max_rate", "ceil", "burst", "cburst", "leaf",
                           "flows", "target", "interval", "ecn", "limit"),
                   "tbf": ("rate", "rate_per_cpu", "cpus", "min_rate", "max_rate", "burst", "latency"),
                   "fq_codel": FQ_CODEL_OPTIONS,
                   "pfifo": ("limit",),
                   "cake": ("rate", "rate_per_cpu", "cpus", "min_rate", "max_rate", "target", "interval"),
                   "fq": ("rate", "limit"),
                   "ingress": ()}
        if state == "absent":
            allowed = dict((k, ()) for k in KINDS)
        usable = allowed.get(kind, ())
        for name in sorted(given):
            if given[name] is not None and name not in usable:
                raise ValidationError(name, "does not apply to %s" % (
                    "state=absent" if state == "absent" else "kind=%s" % kind))
        self.options = {}
        if state == "absent" or kind in ("ingress",):
            return
        if kind in ("htb", "tbf"):
            self.options["rate"] = self._rate(rate, rate_per_cpu, cpus, min_rate, max_rate)
            self.options["burst"] = _burst("burst", burst, self.options["rate"],
                                           MAX_U32 if kind == "htb" else TBF_MAX_BUFFER_TICKS,
                                           "the htb class" if kind == "htb" else "tbf")
        if kind == "htb":
            self.options["ceil"] = parse_rate("ceil", ceil) if ceil is not None else self.options["rate"]
            if self.options["ceil"] < self.options["rate"]:
                raise ValidationError("ceil", "%s is below rate %s" % (
                    format_rate(self.options["ceil"]), format_rate(self.options["rate"])))
            # the default, burst, always fits: at ceil >= rate it takes no longer to send
            self.options["cburst"] = (_burst("cburst", cburst, self.options["ceil"], MAX_U32, "the htb class")
                                      if cburst is not None else self.options["burst"])
            leaf = "fq_codel" if leaf is None else leaf
            if leaf not in LEAVES:
                raise ValidationError("leaf", "%r is not one of %s" % (leaf, ", ".join(LEAVES)))
            self.leaf = leaf
            self.leaf_options = self._leaf_options(leaf, flows, target, interval, ecn, limit)
        if kind == "tbf":
            self.options["latency"] = parse_time("latency", latency if latency is not None else "50ms")
            if tbf_limit(self.options["rate"], self.options["latency"], self.options["burst"]) > MAX_U32:
                raise ValidationError("latency", "%dus at %s queues more than 4 GiB (the kernel's limit field)"
                                      % (self.options["latency"], format_rate(self.options["rate"])))
        if kind in ("fq_codel", "pfifo"):
            self.options = self._leaf_options(kind, flows, target, interval, ecn, limit)
        if kind in ("cake", "fq"):
            self.options = self._cake_fq_options(kind, dict(rate=rate, rate_per_cpu=rate_per_cpu, cpus=cpus,
                                                            min_rate=min_rate, max_rate=max_rate), target,
                                                 interval, limit)

    @classmethod
    def _cake_fq_options(cls, kind, rates, target, interval, limit):
        options = {}
        if kind == "fq":
            if rates["rate"] is not None:
                options["rate"] = UNLIMITED["fq"] if _unlimited(rates["rate"]) else parse_rate("rate", rates["rate"])
            if limit is not None:
                options["limit"] = _count("limit", limit, 1)
            return options
        if _unlimited(rates["rate"]):
            for name in ("rate_per_cpu", "cpus", "min_rate", "max_rate"):
                if rates[name] is not None:
                    raise ValidationError(name, "does not apply to rate=unlimited")
            options["rate"] = UNLIMITED["cake"]
        elif any(v is not None for v in rates.values()):
            # no rate table: any rate from one byte per second
            options["rate"] = cls._rate(lowest=1, **rates)
        options.update(_codel_times(target, interval))
        return options

    @staticmethod
    def _rate(rate, rate_per_cpu, cpus, min_rate, max_rate, lowest=MIN_RATE):
        if rate is not None and rate_per_cpu is not None:
            raise ValidationError("rate", "give either rate or rate_per_cpu (with cpus), not both")
        if rate is not None:
            if cpus is not None:
                raise ValidationError("cpus", "only applies with rate_per_cpu")
            value = parse_rate("rate", rate)
        elif rate_per_cpu is not None:
            if cpus is None:
                raise ValidationError("cpus", "required with rate_per_cpu (the container's CPU share)")
            if (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0
                    or isinstance(cpus, float) and not math.isfinite(cpus)):
                raise ValidationError("cpus", "%r is not a positive number of CPUs" % (cpus,))
            # exact: a float product of a huge cpus overflows to inf before the range check below
            value = round(parse_rate("rate_per_cpu", rate_per_cpu) * Fraction(cpus))
        else:
            raise ValidationError("rate", "required (or rate_per_cpu with cpus)")
        low = parse_rate("min_rate", min_rate) if min_rate is not None else None
        high = parse_rate("max_rate", max_rate) if max_rate is not None else None
        if low is not None and high is not None and low > high:
            raise ValidationError("min_rate", "%s is above max_rate %s" % (format_rate(low), format_rate(high)))
        if low is not None:
            value = max(value, low)
        if high is not None:
            value = min(value, high)
        field = "rate_per_cpu" if rate_per_cpu is not None else "rate"
        if value > MAX_RATE:
            raise ValidationError(field, "%d bytes/s is above the largest supported rate, %d" % (value, MAX_RATE))
        if value < lowest:
            if lowest == MIN_RATE:
                raise ValidationError(field, "%s is below %s, the lowest rate whose rate table the kernel's "
                                      "32-bit tick fields hold" % (format_rate(value), format_rate(MIN_RATE)))
            raise ValidationError(field, "%s is below one byte per second" % format_rate(value))
        return value

    @staticmethod
    def _leaf_options(kind, flows, target, interval, ecn, limit):
        options = {}
        if kind != "fq_codel":
            for name, value in (("flows", flows), ("target", target), ("interval", interval), ("ecn", ecn)):
                if value is not None:
                    raise ValidationError(name, "only applies to fq_codel")
        if kind == "none" and limit is not None:
            raise ValidationError("limit", "does not apply to leaf=none")
        if limit is not None:
            # pyroute2 packs a pfifo's limit as a signed 32-bit field
            options["limit"] = _count("limit", limit, 1, 2 ** 31 - 1 if kind == "pfifo" else MAX_U32)
        if kind == "fq_codel":
            if flows is not None:
                options["flows"] = _count("flows", flows, 1, 65536)
            options.update(_codel_times(target, interval))
            if ecn is not None:
                if not isinstance(ecn, bool):
                    raise ValidationError("ecn", "%r is not true or false" % (ecn,))
                options["ecn"] = ecn
        return options

    def desired(self):
        """The qdisc as ``view()`` would show it once converged (managed options only)."""
        if self.state == "absent":
            return None
        view = {"kind": self.kind}
        if self.kind == "htb":
            view["class"] = _shown(kernel_class(self.options))
            view["leaf"] = (dict(kernel_options(self.leaf_options, self.leaf), kind=self.leaf)
                            if self.leaf != "none" else None)
        elif self.kind == "tbf":
            view.update(_shown(kernel_tbf(self.options)))
        else:
            view.update(_rate_shown(self.kind, kernel_options(self.options, self.kind)))
        return view


def _unlimited(rate):
    return isinstance(rate, str) and rate.strip().lower() == "unlimited"


def _codel_times(target, interval):
    """``target`` and ``interval`` (fq_codel's, cake's) in microseconds; target no longer than interval."""
    options = {}
    if target is not None:
        options["target"] = parse_time("target", target)
    if interval is not None:
        options["interval"] = parse_time("interval", interval)
    if "target" in options and "interval" in options and options["target"] > options["interval"]:
        raise ValidationError("target", "%dus is longer than interval %dus" % (options["target"], options["interval"]))
    return options


def _count(field, value, low, high=MAX_RATE):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field, "%r is not a whole number between %d and %d" % (value, low, high))
    return value


# -- reading ------------------------------------------------------------------------------------

def _stats(msg):
    stats2 = msg.get_attr("TCA_STATS2")
    out = {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0, "requeues": 0, "qlen": 0, "backlog": 0}
    if stats2 is None:
        return out
    basic = stats2.get_attr("TCA_STATS_BASIC") or {}
    queue = stats2.get_attr("TCA_STATS_QUEUE") or {}
    for key in ("bytes", "packets"):
        out[key] = basic.get(key, 0)
    for key in ("drops", "overlimits", "requeues", "qlen", "backlog"):
        out[key] = queue.get(key, 0)
    return out


def _attr(options, name):
    if options is None or not hasattr(options, "get_attr"):
        return None
    return options.get_attr(name)


def _qdisc_view(msg):
    """What we manage of one qdisc message, in the units of the spec."""
    kind = msg.get_attr("TCA_KIND")
    options = msg.get_attr("TCA_OPTIONS")
    view = {"kind": kind, "handle": msg["handle"]}
    if kind == "htb":
        init = _attr(options, "TCA_HTB_INIT") or {}
        view["default_class"] = init.get("defcls")
    elif kind == "tbf":
        parms = _attr(options, "TCA_TBF_PARMS") or {}
        view.update(_tbf_view(parms.get("rate", 0), parms.get("buffer", 0), parms.get("limit", 0)))
    elif kind == "fq_codel":
        for name in FQ_CODEL_OPTIONS:
            value = _attr(options, "TCA_FQ_CODEL_%s" % name.upper())
            if value is not None:
                view[name] = bool(value) if name == "ecn" else value
    elif kind in ("cake", "fq"):
        for name, attr in CAKE_ATTRS if kind == "cake" else FQ_ATTRS:
            value = _attr(options, attr)
            if value is not None:
                view[name] = value
    elif kind in ("pfifo", "bfifo"):
        if isinstance(options, dict) or hasattr(options, "get"):
            view["limit"] = options.get("limit")
    return view


def _tbf_view(rate, buffer, limit):
    """A tbf as the user sees it (burst in bytes, latency in us), with the kernel's own units beside."""
    burst = ticks_to_bytes(buffer, rate)
    return {"rate": rate, "burst": burst,
            "latency": int(round((limit - burst) * 1e6 / rate)) if rate else 0,
            "buffer": buffer, "limit_bytes": limit}


def _class_view_of(rate, ceil, buffer, cbuffer):
    return {"rate": rate, "ceil": ceil, "burst": ticks_to_bytes(buffer, rate), "cburst": ticks_to_bytes(cbuffer, ceil),
            "buffer": buffer, "cbuffer": cbuffer}


def _class_view(msg):
    parms = _attr(msg.get_attr("TCA_OPTIONS"), "TCA_HTB_PARMS") or {}
    return _class_view_of(parms.get("rate", 0), parms.get("ceil", 0), parms.get("buffer", 0), parms.get("cbuffer", 0))


def kernel_class(options):
    """The htb class the kernel would report for the spec's options."""
    return _class_view_of(options["rate"], options["ceil"], xmit_ticks(options["rate"], options["burst"]),
                          xmit_ticks(options["ceil"], options["cburst"]))


def kernel_tbf(options):
    """The tbf the kernel would report for the spec's options."""
    rate, burst = options["rate"], options["burst"]
    return _tbf_view(rate, xmit_ticks(rate, burst), tbf_limit(rate, options["latency"], burst))


def kernel_options(options, kind):
    """fq_codel, pfifo, cake or fq options as the kernel would report them (fq_codel's times come back
    short; cake keeps its times in microseconds)."""
    if kind != "fq_codel":
        return dict(options)
    return dict((k, codel_readback(v) if k in ("target", "interval") else v) for k, v in options.items())


def _rate_shown(kind, view):
    """``rate: unlimited`` where the kernel's number for it (cake 0, fq ~0U) means just that."""
    if kind in UNLIMITED and view.get("rate") == UNLIMITED[kind]:
        return dict(view, rate="unlimited")
    return view


def read_device(ipr, index):
    """Root and ingress qdiscs of a device, with an htb root's default class and its leaf."""
    qdiscs = [m for m in ipr.get_qdiscs(index=index) if m["index"] == index]
    links = ipr.get_links(index)
    state = {"root": None, "ingress": None, "class": None, "leaf": None, "stats": {},
             "txqueuelen": links[0].get_attr("IFLA_TXQLEN") if links else None}
    root_msg = None
    for msg in qdiscs:
        if msg["parent"] == TC_H_ROOT:
            root_msg = msg
            state["root"] = _qdisc_view(msg)
            state["stats"]["qdisc"] = _stats(msg)
        elif msg["parent"] == TC_H_INGRESS:
            state["ingress"] = _qdisc_view(msg)
    root = state["root"]
    if root is not None and root["kind"] == "htb" and root_msg is not None:
        classid = (root["handle"] & 0xFFFF0000) | (root.get("default_class") or 0)
        for msg in ipr.get_classes(index=index):
            if msg["index"] == index and msg["handle"] == classid and msg.get_attr("TCA_KIND") == "htb":
                state["class"] = _class_view(msg)
                state["class"]["handle"] = classid
                state["stats"]["class"] = _stats(msg)
        for msg in qdiscs:
            if msg["parent"] == classid and msg["handle"] != 0:
                state["leaf"] = _qdisc_view(msg)
                state["stats"]["leaf"] = _stats(msg)
    return state


def handle_str(handle):
    return "%x:" % (handle >> 16) if handle & 0xFFFF == 0 else "%x:%x" % (handle >> 16, handle & 0xFFFF)


# the kernel's own units and handles: compared and used to put things back, not shown
_RAW_KEYS = ("handle", "default_class", "limit_bytes", "buffer", "cbuffer")


def _shown(view):
    return dict((k, v) for k, v in view.items() if k not in _RAW_KEYS)


def public_view(state, ingress):
    """The qdisc as the user sees it in diff and return values (rates in bytes per second)."""
    if ingress:
        return {"kind": "ingress"} if state["ingress"] else None
    root = state["root"]
    if root is None:
        return None
    view = _rate_shown(root["kind"], _shown(root))
    view["handle"] = handle_str(root["handle"])
    if root["handle"] == 0:
        view["default"] = True  # the kernel's own choice (noqueue, pfifo_fast, mq, ...)
    if root["kind"] == "htb":
        view["class"] = _shown(state["class"] or {}) or None
        leaf = state["leaf"]
        view["leaf"] = dict((k, v) for k, v in leaf.items() if k != "handle") if leaf else None
    return view


def _leaf_matches(actual, kind, options):
    """Whether a qdisc (a leaf or an fq_codel/pfifo root) is ``kind`` with the given options, in the
    kernel's units; options not given are not compared."""
    if kind == "none":
        return actual is None
    if actual is None or actual["kind"] != kind:
        return False
    return all(actual.get(k) == v for k, v in kernel_options(options, kind).items())


def needs_replace(actual, kind, options):
    """What the kernel cannot change in place on an existing qdisc of the same kind (fq_codel's
    ``flows``), as ``(option, old, new)``; None when a change request will do."""
    if actual is None or actual["kind"] != kind or kind != "fq_codel" or "flows" not in options:
        return None
    if actual.get("flows") != options["flows"]:
        return ("flows", actual.get("flows"), options["flows"])
    return None


def root_matches(spec, state):
    root = state["root"]
    if root is None or root["kind"] != spec.kind or root["handle"] == 0:
        return False
    if spec.kind == "htb":
        return root.get("default_class") == CLASS_MINOR and state["class"] is not None
    return True


def _class_matches(spec, cls):
    want = kernel_class(spec.options)
    return cls is not None and all(cls.get(k) == want[k] for k in ("rate", "ceil", "buffer", "cbuffer"))


def _tbf_matches(spec, root):
    want = kernel_tbf(spec.options)
    return all(root.get(k) == want[k] for k in ("rate", "buffer", "limit_bytes"))


# -- planning -----------------------------------------------------------------------------------

def _describe_root(view):
    if view is None:
        return "the default qdisc"
    if view["handle"] == 0:
        return "the default %s" % view["kind"]
    return "%s %s" % (view["kind"], handle_str(view["handle"]))


def plan(spec, state):
    """The actions that take the device from ``state`` (``read_device``'s) to the spec, and that state."""
    actions = []
    if spec.ingress or (spec.state == "absent" and spec.kind == "ingress"):
        if spec.state == "present" and state["ingress"] is None:
            actions.append({"action": "add_ingress"})
        elif spec.state == "absent" and state["ingress"] is not None:
            actions.append({"action": "del_ingress"})
        return actions, state
    root = state["root"]
    if spec.state == "absent":
        if root is not None and root["handle"] != 0:
            actions.append({"action": "del_root", "old": state})
        return actions, state
    replace = needs_replace(root, spec.kind, spec.options) if spec.kind != "htb" else None
    if not root_matches(spec, state) or replace:
        new_handle = 0x20000 if root is not None and root["handle"] == 0x10000 else 0x10000
        actions.append({"action": "graft_root", "handle": new_handle, "old": state, "why": replace})
        if spec.kind == "htb":
            actions.append({"action": "add_class", "handle": new_handle | CLASS_MINOR})
            if spec.leaf != "none":
                actions.append({"action": "add_leaf", "parent": new_handle | CLASS_MINOR})
        return actions, state
    handle = root["handle"]
    if spec.kind == "htb":
        if not _class_matches(spec, state["class"]):
            actions.append({"action": "change_class", "handle": handle | CLASS_MINOR, "old": state["class"]})
        old_leaf = state["leaf"]
        replace = needs_replace(old_leaf, spec.leaf, spec.leaf_options)
        if replace:
            actions.append({"action": "replace_leaf", "handle": old_leaf["handle"],
                            "new_handle": LEAF_HANDLE if old_leaf["handle"] != LEAF_HANDLE else LEAF_HANDLE_ALT,
                            "parent": handle | CLASS_MINOR, "old": old_leaf, "why": replace})
        elif not _leaf_matches(old_leaf, spec.leaf, spec.leaf_options):
            if old_leaf is not None and spec.leaf != "none" and old_leaf["kind"] == spec.leaf:
                actions.append({"action": "change_leaf", "handle": old_leaf["handle"],
                                "parent": handle | CLASS_MINOR, "old": old_leaf})
            else:
                if old_leaf is not None:
                    actions.append({"action": "del_leaf", "handle": old_leaf["handle"],
                                    "parent": handle | CLASS_MINOR, "old": old_leaf})
                if spec.leaf != "none":
                    actions.append({"action": "add_leaf", "parent": handle | CLASS_MINOR})
    elif spec.kind == "tbf":
        if not _tbf_matches(spec, root):
            actions.append({"action": "change_root", "handle": handle, "old": root})
    else:
        if not _leaf_matches(root, spec.kind, spec.options):
            actions.append({"action": "change_root", "handle": handle, "old": root})
    return actions, state


def describe(spec, action):
    kind = action["action"]
    dev = spec.device
    if kind == "add_ingress":
        return "add ingress qdisc on %s" % dev
    if kind == "del_ingress":
        return "delete ingress qdisc on %s (and the filters on it)" % dev
    if kind == "del_root":
        return "delete root qdisc %s on %s (the kernel's default comes back)" % (
            _describe_root(action["old"]["root"]), dev)
    if kind == "graft_root":
        return "replace root qdisc %s on %s with %s %s%s" % (
            _describe_root(action["old"]["root"]), dev, spec.kind, handle_str(action["handle"]),
            _why(action.get("why"), spec.options, spec.kind))
    if kind == "replace_leaf":
        return "replace %s leaf %s under class %s on %s with %s %s%s" % (
            action["old"]["kind"], handle_str(action["handle"]), handle_str(action["parent"]), dev, spec.leaf,
            handle_str(action["new_handle"]), _why(action["why"], spec.leaf_options, spec.leaf))
    o = spec.options
    if kind in ("add_class", "change_class"):
        text = "rate %s ceil %s burst %d cburst %d" % (format_rate(o["rate"]), format_rate(o["ceil"]), o["burst"],
                                                       o["cburst"])
        if kind == "add_class":
            return "add htb class %s %s on %s" % (handle_str(action["handle"]), text, dev)
        old = action["old"]
        return "change htb class %s on %s: %s (was rate %s ceil %s burst %d cburst %d)" % (
            handle_str(action["handle"]), dev, text, format_rate(old["rate"]), format_rate(old["ceil"]),
            old["burst"], old["cburst"])
    if kind == "add_leaf":
        return "add %s leaf %s under class %s on %s" % (spec.leaf, _options_text(spec.leaf_options),
                                                        handle_str(action["parent"]), dev)
    if kind == "del_leaf":
        return "delete %s leaf under class %s on %s" % (action["old"]["kind"], handle_str(action["parent"]), dev)
    if kind == "change_leaf":
        return "change %s leaf under class %s on %s: %s" % (spec.leaf, handle_str(action["parent"]), dev,
                                                            _options_text(spec.leaf_options))
    return "change root %s %s on %s: %s" % (spec.kind, handle_str(action["handle"]), dev,
                                            _options_text(o, spec.kind))


def _why(why, options, kind):
    if not why:
        return ""
    return " %s (%s %s -> %s cannot change in place)" % ((_options_text(options, kind),) + tuple(why))


def _options_text(options, kind=None):
    parts = []
    for key in sorted(options):
        value = options[key]
        if key == "rate":
            value = "unlimited" if UNLIMITED.get(kind, -1) == value else format_rate(value)
        elif key in ("target", "interval", "latency"):
            value = "%dus" % value
        parts.append("%s %s" % (key, str(value).lower()))
    return ("(%s)" % ", ".join(parts)) if parts else "(kernel defaults)"


# -- applying -----------------------------------------------------------------------------------

def _fq_codel_kwargs(options, change):
    kwargs = {}
    for name, value in options.items():
        if name == "flows" and change:
            continue  # the kernel refuses flows on an existing fq_codel, even unchanged (EINVAL)
        if name in ("target", "interval"):
            kwargs["fqc_" + name] = "%dus" % value
        elif name == "ecn":
            kwargs["fqc_ecn"] = 1 if value else 0
        else:
            kwargs["fqc_" + name] = value
    return kwargs


def _burst_for_ticks(rate, ticks):
    """A burst in bytes that pyroute2 turns into exactly ``ticks`` at ``rate`` (to put a qdisc back as
    it was), or the nearest one where no whole number of bytes does."""
    guess = ticks_to_bytes(ticks, rate)
    candidates = list(range(max(1, guess - 3), guess + 4))
    return min(candidates, key=lambda b: (abs(xmit_ticks(rate, b) - ticks), abs(b - guess)))


def qdisc_kwargs(kind, options, change=False, txqueuelen=None):
    """The pyroute2 ``tc()`` keyword arguments for a qdisc of ``kind`` with spec ``options``.

    A pfifo without ``limit`` gets the device's txqueuelen, the kernel's own default (pyroute2 would
    send 0, which drops every packet); ``change`` leaves out what the kernel cannot change in place.
    """
    if kind == "htb":
        return {"default": CLASS_MINOR}
    if kind == "tbf":
        return {"rate": options["rate"], "burst": options["burst"],
                "limit": tbf_limit(options["rate"], options["latency"], options["burst"])}
    if kind == "fq_codel":
        return _fq_codel_kwargs(options, change)
    if kind == "pfifo":
        if "limit" in options:
            return {"limit": options["limit"]}
        return {} if change else {"limit": max(txqueuelen or 0, 1) if txqueuelen is not None else 1000}
    if kind == "cake":
        # pyroute2 takes cake's bandwidth in bits per second (an int) and sends bytes: exact
        names = {"rate": "bandwidth", "interval": "rtt", "target": "target"}
        return dict((names[k], options[k] * 8 if k == "rate" else options[k]) for k, _a in CAKE_ATTRS if k in options)
    if kind == "fq":
        return dict(("fq_" + attr[len("TCA_FQ_"):].lower(), options[k]) for k, attr in FQ_ATTRS if k in options)
    return {}


def _kwargs_to_restore(view, change=False):
    """``qdisc_kwargs`` that put back a qdisc as ``read_device`` saw it, in the kernel's units."""
    kind = view["kind"]
    if kind == "tbf":
        burst = _burst_for_ticks(view["rate"], view["buffer"])
        return {"rate": view["rate"], "burst": burst, "limit": view["limit_bytes"]}
    if kind == "fq_codel":
        options = dict((k, view[k]) for k in FQ_CODEL_OPTIONS if view.get(k) is not None)
        for name in ("target", "interval"):
            if name in options:
                options[name] = codel_usec_for(options[name])
        return _fq_codel_kwargs(options, change)
    return qdisc_kwargs(kind, view, change=change)


def class_kwargs(options, root_handle):
    return {"parent": root_handle, "rate": options["rate"], "ceil": options["ceil"], "burst": options["burst"],
            "cburst": options["cburst"]}


def _class_to_restore(view, root_handle):
    return {"parent": root_handle, "rate": view["rate"], "ceil": view["ceil"],
            "burst": _burst_for_ticks(view["rate"], view["buffer"]),
            "cburst": _burst_for_ticks(view["ceil"], view["cbuffer"])}


def _missing(kind, parent):
    return ValidationError("leaf" if parent not in (None, TC_H_ROOT) else "kind",
                           "this kernel has no %s qdisc (sch_%s is not built in or loaded)" % (kind, kind))


def _tc(ipr, *args, **kwargs):
    """``ipr.tc`` for a qdisc we add: a kind the kernel lacks becomes an error naming the option."""
    try:
        return ipr.tc(*args, **kwargs)
    except netlink.NetlinkError as exc:
        if exc.code == errno.ENOENT and args[0] in ("add", "replace"):
            raise _missing(args[1], kwargs.get("parent"))
        raise


def _added_kinds(spec, actions):
    """(kind, field) of every qdisc the plan adds."""
    out = []
    for action in actions:
        if action["action"] == "graft_root":
            out.append((spec.kind, "kind"))
        elif action["action"] == "add_leaf":
            out.append((spec.leaf, "leaf"))
        elif action["action"] == "add_ingress":
            out.append(("ingress", "kind"))
    return out


def _restore(ipr, index, old):
    """Put back a root qdisc described by ``read_device`` (the kernel default: delete ours)."""
    _delete_root(ipr, index)
    root = old["root"]
    if root is None or root["handle"] == 0:
        return
    kind = root["kind"]
    if kind == "htb" and old["class"] is not None:
        ipr.tc("add", "htb", index, root["handle"], default=root.get("default_class") or CLASS_MINOR)
        ipr.tc("add-class", "htb", index, old["class"]["handle"], **_class_to_restore(old["class"], root["handle"]))
        leaf = old["leaf"]
        if leaf is not None:
            ipr.tc("add", leaf["kind"], index, leaf["handle"], parent=old["class"]["handle"],
                   **_kwargs_to_restore(leaf))
    elif kind in ("tbf", "fq_codel", "pfifo", "cake", "fq"):
        ipr.tc("add", kind, index, root["handle"], **_kwargs_to_restore(root))
    else:
        raise RuntimeError("cannot put back the previous %s qdisc; the kernel's default is in place" % kind)


def _delete_root(ipr, index):
    try:
        ipr.tc("del", None, index, 0, parent=TC_H_ROOT)
    except netlink.NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.EINVAL):  # nothing but the default there
            raise


def _step(spec, index, action, txqueuelen):  # pylint: disable=too-many-return-statements
    """(do, undo) for one action, each taking the IPRoute to use (undo: None when the step before undoes it)."""
    kind = action["action"]
    if kind == "add_ingress":
        return (lambda ipr: _tc(ipr, "add", "ingress", index, INGRESS_HANDLE),
                lambda ipr: ipr.tc("del", None, index, INGRESS_HANDLE, parent=TC_H_INGRESS))
    if kind == "del_ingress":
        return (lambda ipr: ipr.tc("del", None, index, INGRESS_HANDLE, parent=TC_H_INGRESS),
                lambda ipr: ipr.tc("add", "ingress", index, INGRESS_HANDLE))
    if kind == "del_root":
        return (lambda ipr: _delete_root(ipr, index)), (lambda ipr: _restore(ipr, index, action["old"]))
    if kind == "graft_root":
        return ((lambda ipr: _tc(ipr, "replace", spec.kind, index, action["handle"],
                                 **qdisc_kwargs(spec.kind, spec.options, txqueuelen=txqueuelen))),
                (lambda ipr: _restore(ipr, index, action["old"])))
    if kind == "add_class":
        return (lambda ipr: ipr.tc("add-class", "htb", index, action["handle"],
                                   **class_kwargs(spec.options, action["handle"] & 0xFFFF0000))), None
    if kind == "change_class":
        old = action["old"]
        return ((lambda ipr: ipr.tc("change-class", "htb", index, action["handle"],
                                    **class_kwargs(spec.options, action["handle"] & 0xFFFF0000))),
                (lambda ipr: ipr.tc("change-class", "htb", index, action["handle"],
                                    **_class_to_restore(old, action["handle"] & 0xFFFF0000))))
    old = action.get("old")
    parent = action.get("parent")
    if kind == "add_leaf":
        return ((lambda ipr: _tc(ipr, "add", spec.leaf, index, LEAF_HANDLE, parent=parent,
                                 **qdisc_kwargs(spec.leaf, spec.leaf_options, txqueuelen=txqueuelen))),
                (lambda ipr: ipr.tc("del", None, index, LEAF_HANDLE, parent=parent)))
    if kind == "del_leaf":
        return ((lambda ipr: ipr.tc("del", None, index, old["handle"], parent=parent)),
                (lambda ipr: ipr.tc("add", old["kind"], index, old["handle"], parent=parent,
                                    **_kwargs_to_restore(old))))
    if kind == "replace_leaf":
        # one request grafts the new leaf in place of the old: the class is never without its leaf
        return ((lambda ipr: _tc(ipr, "replace", spec.leaf, index, action["new_handle"], parent=parent,
                                 **qdisc_kwargs(spec.leaf, spec.leaf_options, txqueuelen=txqueuelen))),
                (lambda ipr: ipr.tc("replace", old["kind"], index, old["handle"], parent=parent,
                                    **_kwargs_to_restore(old))))
    if kind == "change_leaf":
        return ((lambda ipr: ipr.tc("change", spec.leaf, index, old["handle"], parent=parent,
                                    **qdisc_kwargs(spec.leaf, spec.leaf_options, change=True))),
                (lambda ipr: ipr.tc("change", old["kind"], index, old["handle"], parent=parent,
                                    **_kwargs_to_restore(old, change=True))))
    if kind == "change_root":
        return ((lambda ipr: ipr.tc("change", spec.kind, index, action["handle"],
                                    **qdisc_kwargs(spec.kind, spec.options, change=True))),
                (lambda ipr: ipr.tc("change", old["kind"], index, action["handle"],
                                    **_kwargs_to_restore(old, change=True))))
    raise ValueError("unknown action %r" % kind)


def statistics(state, spec_kind=None):
    """Counters the way Mesos reports them: the rate limiter (bw_limit) and the AQM (bloat_reduction)."""
    stats = state["stats"]
    root = state["root"]
    out = {}
    if "qdisc" in stats:
        out["qdisc"] = stats["qdisc"]
    if root is not None and root["kind"] == "htb" and "class" in stats:
        out["bw_limit"] = stats["class"]
        leaf = state["leaf"]
        if leaf is not None and leaf["kind"] == "fq_codel":
            out["bloat_reduction"] = stats["leaf"]
    elif root is not None and root["kind"] == "tbf":
        out["bw_limit"] = stats["qdisc"]
    elif root is not None and root["kind"] == "fq_codel":
        out["bloat_reduction"] = stats["qdisc"]
    elif root is not None and root["kind"] == "cake":
        # shaper and AQM in one qdisc
        out["bloat_reduction"] = stats["qdisc"]
        if root.get("rate"):
            out["bw_limit"] = stats["qdisc"]
    return out


def spec(params, host=True, planned=None):
    """The part's validated spec from the module's options (contract.py); ``host=False`` reads nothing."""
    return QdiscSpec(host=host, planned=planned, **validate.params(OPTIONS, params))


# a veth's root as the veth part leaves it (up): the kernel's noqueue, no ingress (measured on 6.1 and 6.18)
_NEW_VETH = {"root": {"kind": "noqueue", "handle": 0}, "txqueuelen": 1000}
# the loopback of a namespace this run creates: down, so no root qdisc at all yet
_NEW_LO = {"root": None, "txqueuelen": 1000}
_NO_STATS = {"bytes": 0, "packets": 0, "drops": 0, "overlimits": 0, "requeues": 0, "qlen": 0, "backlog": 0}


def new_device_state(spec, planned):
    """What ``read_device`` reports for the device once this run has created it (check mode), or None
    when the device exists (or not) on the host already: read it."""
    planned = planned or contract.NOTHING_PLANNED
    if not planned.device(spec.netns, spec.device):
        return None
    if (planned._key(spec.netns), spec.device) in planned.devices:  # pylint: disable=protected-access
        fresh = _NEW_VETH
    elif spec.device == "lo":
        fresh = _NEW_LO
    else:
        raise ValidationError("device", "no device %s in namespace %s (this run creates the namespace, with "
                                        "only lo in it)" % (spec.device, spec.netns_label))
    state = {"root": dict(fresh["root"]) if fresh["root"] else None, "ingress": None, "class": None, "leaf": None,
             "stats": {"qdisc": dict(_NO_STATS)} if fresh["root"] else {}, "txqueuelen": fresh["txqueuelen"]}
    return state


def _reopening(netns, undo):
    """``undo(ipr)`` run later, after this run's handle is closed (by a unit rolling back): on its own handle."""
    def run():
        ipr = netlink.open_iproute(netns)
        try:
            undo(ipr)
        finally:
            ipr.close()
    return run


def converge(spec, check_mode=False, planned=None):
    """Read, plan, and unless ``check_mode``, apply (undo handed to the open ``transaction.unit``).

    Returns changed, changes, diff (before/after), actions, before, after, qdisc, statistics. In check
    mode a device ``planned`` says this run creates is planned against the state a new one has.
    """
    check_psched()
    state = new_device_state(spec, planned) if check_mode else None
    if state is not None:
        return _finish(spec, check_mode, plan(spec, state)[0], state)
    ipr = netlink.open_iproute(spec.netns)
    try:
        found = ipr.link_lookup(ifname=spec.device)
        if not found:
            raise ValidationError("device", "no device %s in namespace %s" % (spec.device, spec.netns_label))
        index = found[0]
        state = read_device(ipr, index)
        actions = plan(spec, state)[0]
        if not actions or check_mode:
            return _finish(spec, check_mode, actions, state)
        changes = [describe(spec, a) for a in actions]
        steps = []
        for action, text in zip(actions, changes):
            do, undo = _step(spec, index, action, state["txqueuelen"])
            steps.append(lambda t, d=text, do=do, undo=undo: t.step(
                d, lambda: do(ipr), _reopening(spec.netns, undo) if undo else None))
        try:
            transaction.Transaction().run(spec.device, steps)
        except ApplyError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and "rolled back cleanly" in exc.reason:
                # a qdisc the kernel lacks: refused, and what came before it undone
                raise ValidationError(cause.field, cause.reason)
            raise
        return _finish(spec, check_mode, actions, state, read_device(ipr, index))
    finally:
        ipr.close()


def _finish(spec, check_mode, actions, state, after_state=None):
    """The part's result from the plan and the state before (and, after a real run, after)."""
    before = public_view(state, spec.ingress)
    if actions and check_mode:
        # the real run would learn it from the kernel's refusal: check mode asks a throwaway namespace
        for kind, field in _added_kinds(spec, actions):
            from . import capabilities  # the probe: not for the controller's policy check
            reason = capabilities.qdisc_unsupported(kind)
            if reason:
                raise ValidationError(field, reason)
    shown = after_state if after_state is not None else state
    if after_state is not None:
        after = public_view(after_state, spec.ingress)
    elif actions:
        after = _predict(spec, state, actions)
    else:
        after = before
    return {"changed": bool(actions), "changes": [describe(spec, a) for a in actions],
            "diff": {"before": before or {}, "after": after or {}},
            "actions": actions, "before": before, "after": after,
            "qdisc": public_view(shown, spec.ingress) if spec.state == "present" else None,
            "statistics": statistics(shown) if not spec.ingress else {}}


def _predict(spec, state, actions):
    """The view check mode promises (options the kernel fills in are left out)."""
    if spec.ingress:
        return {"kind": "ingress"} if spec.state == "present" else None
    if spec.state == "absent":
        return {"kind": "(kernel default)", "default": True}
    desired = spec.desired()
    grafted = [a["handle"] for a in actions if a["action"] == "graft_root"]
    desired["handle"] = handle_str(grafted[0] if grafted else state["root"]["handle"])
    return desired
