"""The error boundary of `cim`: a failure no check foresaw is still one line (and one JSON
document with --json), exit status 1, and the traceback only when asked for."""

import json

import pytest

from cim_cli import main as cli_main
from cim_cli import model_cmds


def _boom(args):
    raise RuntimeError("a bug")


@pytest.fixture
def broken_map(monkeypatch):
    # `cim map` with its command function replaced by one that fails like a bug would.
    real = model_cmds.register

    def register(sub):
        real(sub)
        sub.choices["map"].set_defaults(func=_boom)
    monkeypatch.setattr(model_cmds, "register", register)


def test_unexpected_failure_is_one_line(broken_map, capsys, monkeypatch):
    monkeypatch.delenv("CIM_DEBUG", raising=False)
    assert cli_main.main(["map"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "internal error: RuntimeError: a bug" in err and "CIM_DEBUG=1" in err


def test_unexpected_failure_with_json_is_one_document(broken_map, capsys, monkeypatch):
    monkeypatch.delenv("CIM_DEBUG", raising=False)
    assert cli_main.main(["map", "--json"]) == 1
    out, _ = capsys.readouterr()
    assert "RuntimeError" in json.loads(out)["error"]


def test_cim_debug_shows_the_traceback(broken_map, monkeypatch):
    monkeypatch.setenv("CIM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        cli_main.main(["map"])
