# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watcher tells systemd it is ready (Type=notify) through $NOTIFY_SOCKET, path or abstract."""

import os
import socket
import uuid

import pytest

from module_utils import watcher


@pytest.fixture
def receiver(tmp_path, monkeypatch, request):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
    else:
        name = "hostnet-test-%s" % uuid.uuid4().hex
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.settimeout(2)
    yield sock
    sock.close()


@pytest.mark.parametrize("receiver", ["path", "abstract"], indirect=True)
def test_ready_reaches_the_notify_socket(receiver):
    assert watcher.notify_ready() is True
    assert receiver.recv(100) == b"READY=1"


def test_without_a_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert watcher.notify_ready() is False
    assert "NOTIFY_SOCKET" not in os.environ
