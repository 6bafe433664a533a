# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables-legacy through python-iptables: libiptc in process, one commit per table.

Used on legacy hosts when python-iptables (Debian: python3-iptables) is importable. libiptc
reads the whole table, the changes are made on that copy, and ``commit`` replaces the table in
the kernel in one step: a failure before it changes nothing. Reading stays with
``iptables-legacy-save`` (shared with the restore engine; it changes nothing).

python-iptables initialises xtables for one address family per process: once IPv4 targets are
loaded, IPv6 ones are "not found". So IPv4 goes through libiptc here and IPv6 through
``ip6tables-legacy-restore``; if the IPv6 part fails, the IPv4 commit is reverted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .errors import ApplyError
from .portmap_ipt import RESTORE_ARGS, IptablesBackend, chain_rules, jump_comment, _HOOKS, _JUMP_RE

try:
    import iptc
    IPTC_IMPORT_ERROR = None
except Exception as exc:  # pylint: disable=broad-except
    # without libiptc it raises more than ImportError
    iptc = None
    IPTC_IMPORT_ERROR = exc


class IptcLegacyBackend(IptablesBackend):
    def __init__(self):
        super(IptcLegacyBackend, self).__init__("legacy")
        self.engine = "python-iptables (IPv4), ip6tables-legacy-restore (IPv6)"

    @staticmethod
    def _table():
        table = iptc.Table(iptc.Table.NAT)
        table.autocommit = False
        table.refresh()
        return table

    @staticmethod
    def _build(rule):
        built = iptc.Rule()
        if rule.get("in"):
            built.in_interface = rule["in"]
        if rule.get("src"):
            built.src = rule["src"]
        if rule.get("dst"):
            built.dst = rule["dst"]
        if rule.get("addrtype"):
            built.create_match("addrtype").dst_type = rule["addrtype"]
        if rule.get("proto"):
            built.protocol = rule["proto"]
            built.create_match(rule["proto"]).dport = str(rule["dport"])
        if rule.get("ctstate"):
            built.create_match("conntrack").ctstate = rule["ctstate"]
        if rule.get("comment"):
            built.create_match("comment").comment = rule["comment"]
        target = built.create_target(rule["target"])
        if rule.get("to"):
            target.to_destination = rule["to"]
        return built

    def _apply_ipv4(self, spec, state, stale):
        table = self._table()
        chain, post = spec.chain, spec.chain + "-POST"
        comment = jump_comment(spec.network, state)
        ours = set([chain, post] + [s for name in stale for s in (name, name + "-POST")])
        for hook, match, suffix in _HOOKS:
            builtin = iptc.Chain(table, hook)
            present = False
            for rule in list(builtin.rules):
                if rule.target.name not in ours:
                    continue
                comments = [m.comment for m in rule.matches if m.name == "comment"]
                if not comments or not _JUMP_RE.match(comments[0]):
                    continue
                if state.exists and rule.target.name == chain + suffix and comments[0] == comment and not present:
                    present = True
                else:
                    builtin.delete_rule(rule)
            if state.exists and not present:
                jump = {"comment": comment, "target": chain + suffix}
                if match:
                    jump["addrtype"] = "LOCAL"
                self._ensure_chain(table, chain + suffix)
                builtin.insert_rule(self._build(jump))
        if state.exists:
            for name in (chain, post):
                self._ensure_chain(table, name).flush()
            for rule in chain_rules(spec, state, 4):
                iptc.Chain(table, rule["chain"]).append_rule(self._build(rule))
        for name in sorted(ours - (set([chain, post]) if state.exists else set())):
            if table.is_chain(name):
                iptc.Chain(table, name).flush()
                table.delete_chain(name)
        table.commit()

    @staticmethod
    def _ensure_chain(table, name):
        return iptc.Chain(table, name) if table.is_chain(name) else table.create_chain(name)

    def apply(self, spec, before, after, stale=()):
        if self.tools[(6, "restore")] is None and any(k[0] == 6 for k in after.entries):
            raise ApplyError("mappings", "IPv6 mappings need ip6tables-legacy-restore")
        try:
            self._apply_ipv4(spec, after, stale)
        except Exception as exc:  # iptc raises its own errors, and ValueError for bad arguments
            raise ApplyError("mappings", "libiptc refused the IPv4 change; nothing was changed: %s" % exc) from None
        if any(k[0] == 6 for k in list(before.entries) + list(after.entries)) or self.jumps[6]:
            code, _out, err = self._run(6, "restore", RESTORE_ARGS, stdin=self.render(spec, after, 6, stale))
            if code != 0:
                try:
                    self._apply_ipv4(spec, before, ())
                    undone = "the IPv4 part was put back"
                except Exception as exc:  # pylint: disable=broad-except
                    undone = "putting the IPv4 part back FAILED too (%s)" % exc
                raise ApplyError("mappings", "ip6tables-legacy-restore rejected the ruleset; %s: %s"
                                 % (undone, err.strip()[:2000]))
