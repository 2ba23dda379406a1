"""Safe output: atomic files, the refusals of cim_spec.files, and the chip-state commit
interrupted at every file-system step (a reader sees the whole old state or the whole new one,
never a mix)."""

import os
import shutil

import numpy as np
import pytest

from cim_spec import chipstate, device_params, files
from cim_spec.chipstate import ChipStateError
from cim_spec.config import SystemConfig
from cim_spec.files import OutputError
from golden import transfer
from tests.cim_spec.test_chipstate import TINY, random_program

STEPS = ("replace", "link", "fsync", "unlink")


@pytest.fixture(scope="module")
def states():
    """Two small chip states that differ in every cell (seeds 1 and 2)."""
    cfg = SystemConfig(n_pe=4, array_rows=32, array_cols=16)
    mapping, prog = random_program(cfg, seed=5, net=TINY)
    dev = device_params.load_preset("yao2020")
    return [transfer.program_chip(mapping, prog, dev, s) for s in (1, 2)]


class Crash(BaseException):
    """The process dies: nothing after this step runs, not even cleanup."""


class FsSteps:
    """Counts the file-system steps of cim_spec.files and chipstate (os.replace, link, fsync,
    unlink); from step `at` on, every step fails (`dead`) or only that one does."""

    def __init__(self, monkeypatch, at=None, exc=Crash, dead=True):
        self.n, self.at, self.exc, self.dead = 0, at, exc, dead
        for name in STEPS:
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real):
        def step(*a, **kw):
            k, self.n = self.n, self.n + 1
            if self.at is not None and (k == self.at or (self.dead and k > self.at)):
                raise self.exc(f"step {k}")
            return real(*a, **kw)
        return step


def same(state, other) -> bool:
    return state.seed == other.seed and np.array_equal(state.g_us, other.g_us) \
        and state.manifest == other.manifest


def count_steps(monkeypatch, tmp_path, states, old: bool) -> int:
    d = tmp_path / "count"
    if old:
        chipstate.save(states[0], d / "s")
    with monkeypatch.context() as m:
        fs = FsSteps(m)
        chipstate.save(states[1], d / "s")
    return fs.n


@pytest.mark.parametrize("old", [True, False], ids=["replace", "fresh"])
def test_crash_at_every_step_leaves_old_or_new(states, tmp_path, monkeypatch, old):
    a, b = states
    n = count_steps(monkeypatch, tmp_path, states, old)
    assert n >= (8 if old else 5)      # fsyncs, link, renames, cleanup
    seen = set()
    for k in range(n):
        d = tmp_path / f"k{k}"
        if old:
            chipstate.save(a, d / "s")
        with monkeypatch.context() as m:
            FsSteps(m, at=k)
            with pytest.raises(Crash):
                chipstate.save(b, d / "s")
        try:
            back = chipstate.load(d / "s")
        except ChipStateError as e:
            # Only a fresh target may show nothing yet, and then as a missing manifest.
            assert not old and "manifest does not exist" in str(e), (k, e)
            seen.add("none")
            continue
        assert same(back, a) or same(back, b), k
        seen.add("old" if same(back, a) else "new")
        # The next save recovers and leaves no kept copy behind.
        chipstate.save(b, d / "s")
        assert same(chipstate.load(d / "s"), b)
        assert not chipstate.prev_path(d / "s.npz").exists()
    # The crash points cover both outcomes: the commit has a single visible switch.
    assert seen == ({"old", "new"} if old else {"none", "new"}), seen


def test_failure_at_any_step_restores_the_old_state(states, tmp_path, monkeypatch):
    """An error (not a crash) inside the commit: the old pair is back, untouched."""
    a, b = states
    n = count_steps(monkeypatch, tmp_path, states, True)
    for k in range(n):
        d = tmp_path / f"k{k}"
        npz, js = chipstate.save(a, d / "s")
        before = npz.read_bytes(), js.read_bytes()
        with monkeypatch.context() as m:
            FsSteps(m, at=k, exc=lambda msg: OSError(28, "No space left on device"),
                    dead=False)
            try:
                chipstate.save(b, d / "s")
                completed = True
            except OutputError as e:
                assert "No space left on device" in str(e)
                completed = False
        back = chipstate.load(d / "s")
        if completed:       # the failing step was the cleanup after the switch
            assert same(back, b), k
        else:
            assert (npz.read_bytes(), js.read_bytes()) == before, k
        assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".s.npz.prev")) \
            == ["s.json", "s.npz"], k


def test_half_renamed_pair_reads_as_old(states, tmp_path):
    """The window between the two renames, made by hand: new npz, old manifest, kept copy."""
    a, b = states
    npz, js = chipstate.save(a, tmp_path / "s")
    chipstate.save(b, tmp_path / "new")
    shutil.copy(npz, chipstate.prev_path(npz))
    shutil.copy(tmp_path / "new.npz", npz)
    assert same(chipstate.load(tmp_path / "s"), a)
    # Without the kept copy the pair is refused, not misread.
    chipstate.prev_path(npz).unlink()
    with pytest.raises(ChipStateError, match="checksum mismatch"):
        chipstate.load(tmp_path / "s")


def test_write_is_atomic_and_refusals(tmp_path):
    p = files.write_text(tmp_path / "a" / "b.json", "{}")
    assert p.read_text() == "{}" and [q.name for q in p.parent.iterdir()] == ["b.json"]
    with pytest.raises(OutputError, match="exists; give --force"):
        files.check_output(p, {files.JSON})
    files.check_output(p, {files.JSON}, force=True)
    with pytest.raises(OutputError, match=r"holds a JSON file, not a model file; refusing .*"
                                          r"even with --force"):
        files.check_output(p, {files.MODEL}, force=True)
    with pytest.raises(OutputError, match="also an input"):
        files.check_output(p, {files.JSON}, force=True, inputs=[tmp_path / "a" / "." / "b.json"])
    with pytest.raises(OutputError, match="it is a directory"):
        files.check_output(tmp_path / "a", {files.JSON})
    with pytest.raises(OutputError, match="b.json is not a directory"):
        files.check_output(p / "c.json", {files.JSON})
    with pytest.raises(OutputError, match="cannot write /proc/c.json"):
        files.check_output("/proc/c.json", {files.JSON})
    with pytest.raises(OutputError, match="it is a file, not a directory"):
        files.check_output(p, {files.DIRECTORY})


def test_kinds_are_told_apart(states, tmp_path):
    from golden import data, model_file
    npz, js = chipstate.save(states[0], tmp_path / "s")
    assert files.kind_of(npz) == files.CHIP_ARRAYS
    assert files.kind_of(js) == files.CHIP_MANIFEST
    assert files.kind_of(model_file.BUNDLED_WEIGHTS) == files.MODEL
    assert files.kind_of(data.BUNDLED_PATH) == files.MNIST
    assert files.kind_of(tmp_path) == files.DIRECTORY
    assert files.kind_of(tmp_path / "nothing") == files.MISSING
    (tmp_path / "t").write_bytes(b"\x00\x01")
    assert files.kind_of(tmp_path / "t") == files.OTHER
