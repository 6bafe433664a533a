#!/usr/bin/env bash
# Write what this instance's network looks like to $1: links, namespaces, qdiscs, ingress filters,
# rulesets, the collection's state files and units, the watcher's state. prepare.yml takes it
# before the check-mode run, side_effect.yml after it and compares.
set -o pipefail
{
  ip -d link show | sed -E 's/ +$//'
  ip netns list
  for d in /sys/class/net/*; do d=${d##*/}; tc qdisc show dev "$d"; tc filter show dev "$d" ingress; done
  nft list ruleset
  ls -la /run/hostnet /etc/hostnet /etc/systemd/system 2>&1
  systemctl is-active hostnet-ports-watcher || true
} > "$1"
