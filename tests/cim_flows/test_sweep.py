"""`cim sweep`: the spec, the same rows wherever a point runs (in this process, a LocalCluster,
a `dask scheduler` + `dask worker` on the loopback address), resuming, failing points, Ctrl-C."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cim_cli.main import main
from cim_flows import stages, sweep, sweep_spec
from cim_spec.config import SystemConfig
from cim_spec.device_params import load_preset
from golden import data

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

TINY = """
[sweep]
seeds = [1, 2]
images = 100

[axes]
"device.relax_sigma_us" = [0.3, 1.2]
"""


def write(tmp_path, text, name="spec.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def rows_of(out):
    return sweep.read_table(Path(out) / "sweep.parquet")


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    """The tiny sweep run in this process, without Dask: (spec path, out dir, rows)."""
    tmp = tmp_path_factory.mktemp("inline")
    spec = write(tmp, TINY)
    out = tmp / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0"]) == 0
    return spec, out, rows_of(out)


def test_rows_match_an_independent_evaluation(inline):
    _, _, rows = inline
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    d = data.load_bundled()
    for r in rows[:2]:
        dev = load_preset("yao2020").with_(relax_sigma_us=r["device.relax_sigma_us"])
        state = stages.transfer_state(SystemConfig(), stages.load_model(), dev, r["seed"])
        acc = stages.chip_accuracy(state.chip, d.test_images[:100], d.test_labels[:100],
                                   progress=False)
        assert r["accuracy_transfer"] == acc
        assert r["images"] == 100 and r["cycles_source"] == "mapping lower bound"
        assert r["cycles_per_image"] == 21600          # the paper chip's slot bound, r = 1
    # More programming error, lower accuracy: the axis reaches the device model.
    acc = {v: np.mean([r["accuracy_transfer"] for r in rows if r["device.relax_sigma_us"] == v])
           for v in (0.3, 1.2)}
    assert acc[0.3] > acc[1.2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_same_rows_on_a_local_cluster_and_a_loopback_scheduler(inline, tmp_path):
    spec, _, want = inline
    out = tmp_path / "local"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "2"]) == 0
    assert rows_of(out) == want
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler",
                               "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", addr, "--host", "127.0.0.1",
             "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = tmp_path / "remote"
        assert main(["sweep", str(spec), "--out", str(out), "--scheduler", addr]) == 0
        assert rows_of(out) == want
        doc = json.loads((out / "sweep.json").read_text())
        assert doc["executor"] == addr and doc["ran"] == 4
        # The points ran in the worker's process, not here.
        pids = {json.loads(p.read_text())["pid"] for p in (out / "points").glob("*.json")}
        assert os.getpid() not in pids
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def test_rerun_skips_done_points(inline, tmp_path, capsys):
    spec, first, want = inline
    out = tmp_path / "again"
    (out / "points").mkdir(parents=True)
    for p in (first / "points").glob("*.json"):
        (out / "points" / p.name).write_bytes(p.read_bytes())
    victim = sorted((out / "points").glob("*.json"))[0]
    victim.unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ran"] == 1 and res["done"] == 4
    assert victim.exists()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")
            if p.name != victim.name} == stamps
    assert rows_of(out) == want
    # A different spec into the same directory needs --force; the points stay reusable.
    other = write(tmp_path, TINY.replace("[1, 2]", "[1, 2, 3]"), "other.toml")
    assert main(["sweep", str(other), "--out", str(out), "--workers", "0"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["sweep", str(other), "--out", str(out), "--workers", "0", "--force",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == 2


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    # 16-bit ADCs with a 32-bit gain fraction need gains beyond the 32-bit register: the
    # calibration refuses them at run time (the spec check only maps the network).
    spec = write(tmp_path, """
[sweep]
seeds = [1]
images = 50
[base]
"system.adc_bits" = 16
[axes]
"system.adc_gain_frac_bits" = [16, 32]
""")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["done"], res["failed"]) == (1, 1)
    rows = {r["system.adc_gain_frac_bits"]: r for r in rows_of(out)}
    assert rows[16]["status"] == "ok" and rows[16]["accuracy_transfer"] > 0.5
    assert rows[32]["status"] == "failed" and rows[32]["accuracy_transfer"] is None
    assert "adc_gain" in rows[32]["error"] and "2**32" in rows[32]["error"]
    # A rerun retries the failed point only.
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == 1


def _default_sigint():
    # A suite started in the background by a non-interactive shell (`bash .ci/run &`) has
    # SIGINT ignored, and a child inherits that: Python then installs no KeyboardInterrupt
    # handler and Ctrl-C would do nothing. A user's terminal gives the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_a_readable_partial_table(tmp_path):
    spec = write(tmp_path, TINY.replace("seeds = [1, 2]", "chips = 40"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "cim_cli.main", "sweep", str(spec), "--out",
                             str(out), "--workers", "0"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)
    try:
        deadline = time.time() + 40
        while time.time() < deadline and not list((out / "points").glob("*.json")):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    doc = json.loads((out / "sweep.json").read_text())
    rows = rows_of(out)
    assert doc["points"] == 80 and 1 <= doc["done"] == len(rows) < 80
    assert doc["remaining"] == 80 - len(rows)
    assert (out / "sweep.csv").read_text().count("\n") == len(rows) + 1


@pytest.mark.parametrize("text,where", [
    ("[sweep]\nchips = 0\n[axes]\n'system.adc_bits' = [4]", "sweep.chips"),
    ("[sweep]\n[axes]\n'system.adc_bitz' = [4]", "axes.system.adc_bitz"),
    ("[sweep]\n[axes]\n'system.adc_bits' = [4.5]", "axes.system.adc_bits"),
    ("[sweep]\n[axes]\n'system.adc_bits' = []", "axes.system.adc_bits"),
    ("[sweep]\nstages = ['aged']\n[axes]\n'system.adc_bits' = [4]", "sweep.ages"),
    ("[sweep]\nsampling = 'sobol'\n[axes]\n'system.adc_bits' = [4]", "sweep.sampling"),
    ("[sweep]\nsampling = 'random'\n[axes]\n'system.adc_bits' = [4]", "sweep.samples"),
    ("[sweep]\ncolour = 1\n[axes]\n'system.adc_bits' = [4]", "sweep.colour"),
    ("[sweep]\n[axes]\n'system.replication' = [1, 9]", "replication=9"),
    ("[sweep]\n[axes]\n'device.g_ceil_us' = [10.0]", "g_ceil_us"),
    ("[sweep]\n", "axes"),
    ("[sweep\n", "not valid TOML"),
])
def test_a_bad_spec_is_one_line_naming_file_and_field(tmp_path, capsys, text, where):
    spec = write(tmp_path, text)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(spec) in err and where in err, err
    assert not (tmp_path / "out").exists()


def test_grid_and_random_points(tmp_path):
    grid = sweep_spec.load(write(tmp_path, """
[sweep]
chips = 3
[axes]
"system.cell_states" = [4, 8]
"device.relax_sigma_us" = [0.1, 0.2, 0.4]
"""))
    pts = grid.points()
    assert len(pts) == 2 * 3 * 3
    assert {(p.system.cell_states, p.system.weight_levels) for p in pts} == {(4, 7), (8, 15)}
    assert [p.seed for p in pts[:3]] == [1, 2, 3]
    text = """
[sweep]
sampling = "random"
samples = 20
sample_seed = 5
[axes]
"system.adc_bits" = [4, 6, 8]
"device.relax_sigma_us" = {min = 0.01, max = 1.0, log = true}
"""
    a = sweep_spec.load(write(tmp_path, text, "r.toml")).combinations()
    assert a == sweep_spec.load(write(tmp_path, text, "r2.toml")).combinations()
    sig = [c["device.relax_sigma_us"] for c in a]
    assert len(a) == 20 and min(sig) >= 0.01 and max(sig) <= 1.0 and len(set(sig)) == 20
    assert {c["system.adc_bits"] for c in a} == {4, 6, 8}
