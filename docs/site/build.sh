#!/usr/bin/env bash
# Copyright (c) Ansible Project
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Created with antsibull-docs 2.28.0; changed for hostnet.isolation: everything it writes goes to
# DOCS_BUILD_DIR (default: build/ here; `make docs` gives .build/docs), and the Ansible docsite's
# labels the generated pages link to come from ansible_devel.inv.txt, so the build needs no network.
# It documents the hostnet.isolation found on ANSIBLE_COLLECTIONS_PATH (`make docs` installs the
# working tree's there first).

set -eu

here="$( cd -- "$( dirname -- "${BASH_SOURCE[0]}" )" &> /dev/null && pwd )"
out="${DOCS_BUILD_DIR:-$here/build}"
mkdir -p "$out"
out="$( cd -- "$out" && pwd )"

# Create collection documentation next to a copy of the committed index
rm -rf "$out/rst"
mkdir -p "$out/rst"
chmod og-w "$out" "$out/rst"  # antsibull-docs wants that directory only writable by itself
cp "$here/rst/index.rst" "$out/rst/"
antsibull-docs \
    --config-file "$here/antsibull-docs.cfg" \
    collection \
    --cleanup everything \
    --fail-on-error \
    --use-current \
    --dest-dir "$out/rst" \
    hostnet.isolation

# The intersphinx inventory of the Ansible docsite's labels the pages use (conf.py reads ../ansible_devel.inv)
python3 - "$here/ansible_devel.inv.txt" "$out/ansible_devel.inv" <<'PY'
import sys
import zlib

with open(sys.argv[1]) as src:
    lines = "".join(line for line in src if line.strip() and not line.startswith("#"))
with open(sys.argv[2], "wb") as dst:
    dst.write(b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
              b"# The remainder of this file is compressed using zlib.\n" + zlib.compress(lines.encode()))
PY

# Build Sphinx site; every warning fails the build
sphinx-build -M html "$out/rst" "$out" -c "$here" -W --keep-going -q
