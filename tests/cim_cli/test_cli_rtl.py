"""`cim verilog` and `cim sim` from the command line (the RTL runs themselves are in
testbench/test_chip.py)."""

import hashlib
import json

import pytest

from cim_cli.main import main


def test_verilog_is_deterministic_and_manifested(tmp_path, capsys):
    for d in ("a", "b"):
        assert main(["verilog", "--replication", "3", "--out", str(tmp_path / d), "--json"]) == 0
    capsys.readouterr()
    a, b = tmp_path / "a", tmp_path / "b"
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["config"]["replication"] == 3
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((a / name).read_bytes()).hexdigest() == digest
    # One code per cell per PE in the conductance initialization.
    lines = (a / "pe0_conductance.hex").read_text().split()
    assert len(lines) == 128 * 16 and all(0 <= int(v, 16) < 256 for v in lines)


@pytest.mark.parametrize("argv, message", [
    (["sim", "--images", "0"], r"--images must be in [1, "),
    (["sim", "--start", "1000"], "--start 1000 is outside the 1000 test images"),
    (["sim", "--chip", "/nonexistent/chip"], "does not exist"),
    (["verilog", "--replication", "9"], "replication=9 needs more PE groups"),
])
def test_bad_requests_are_refused(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
