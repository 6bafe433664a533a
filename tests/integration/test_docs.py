# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-doc` renders every module of the installed collection, with its options and examples."""

import os
import subprocess

import pytest

from harness.hermetic import REPO
from harness.runner import VENV_BIN, ansible_env

MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "plugins", "modules")) if f.endswith(".py"))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    out = subprocess.run([os.path.join(VENV_BIN, "ansible-doc"), "hostnet.isolation." + module],
                         env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "hostnet.isolation.%s" % module in text
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert section in text, "%s: no %s section" % (module, section)
    assert "WARNING" not in out.stderr, out.stderr
