"""Random configurations (testbench/random_config.py): drawn systems and small networks,
each chip's RTL bit-exact with the golden model. Four seeds per CI run;
`benchmarks/random_configs.py --count 200` runs many."""

from __future__ import annotations

import numpy as np
import pytest

from cim_spec.network import Add, Conv, Dense, Pool
from golden import chip_model
from testbench import chip_sim, random_config

# Seeds per CI run (benchmarks/random_configs.py runs many), chosen for the features they
# draw: seed 0 a two-channel image, a padded conv with a bias, an identity residual block and
# an average pool (replication 2, read noise); seed 1 a lone dense layer (a chip without a
# feature map); seed 13 stride, a floor-mode max pool, a strided block with a projection
# shortcut whose patches are cut across channels (5 bit lines) and two hidden dense layers;
# seed 3 (a three-channel image, stride, padding, a floor-mode max pool, two hidden dense
# layers) on Icarus. Three images do not repay an optimized C++ build: Verilator's model is
# compiled at -O0.
SEEDS = [(0, "verilator"), (1, "verilator"), (13, "verilator"), (3, "icarus")]


@pytest.mark.parametrize(("seed", "simulator"), SEEDS)
def test_random_configuration_is_bit_exact(seed, simulator):
    case = random_config.draw(seed)
    res = chip_sim.simulate(case.chip, case.images, case.image_ids, progress=False,
                            pauses=seed, simulator=simulator,
                            cxx_opt="-O0" if simulator == "verilator" else None)
    if simulator == "verilator":   # the model was compiled as asked, Verilator's -Os nowhere
        log = (res.build_dir / "build.log").read_text()
        assert " -O0 " in log and " -Os " not in log
    assert res.bitexact == len(case.images), (case.describe(), [
        str(m) for m in res.mismatches[:3]])


def test_draws_are_reproducible_and_span_the_space():
    """The same seed draws the same case; 100 seeds reach every replication, noise on and
    off, 1-bit to 8-bit inputs, pooled and unpooled conv layers, none, one and two of them,
    stride, padding, biases, max and average pools in ceil and floor mode, and residual
    blocks with identity and projection shortcuts, one or two hidden dense layers, images
    of one, two and three channels, overlapping pools of both modes."""
    a, b = random_config.draw(5), random_config.draw(5)
    assert a.describe() == b.describe() and (a.chip.conductance == b.chip.conductance).all()
    assert (a.images == b.images).all() and (a.image_ids == b.image_ids).all()
    cases = [random_config.draw(s) for s in range(100)]
    cfgs = [c.config for c in cases]
    assert {c.replication for c in cfgs} == {1, 2, 3}
    assert {c.input_bits for c in cfgs} == set(range(1, 9))
    assert len({c.adc_bits for c in cfgs}) >= 8 and len({c.cell_states for c in cfgs}) == 5
    assert {c.chip.digital.read_noise > 0 for c in cases} == {True, False}
    layers = [la for c in cases for la in c.chip.mapping.network.layers]
    convs = [sum(isinstance(la, Conv) and la.name.startswith("C")
                 for la in c.chip.mapping.network.layers) for c in cases]
    assert set(convs) == {0, 1, 2}   # a lone dense layer too: the chip has no features then
    pools = [la for la in layers if isinstance(la, Pool)]
    assert {(la.mode, la.ceil) for la in pools} == {(m, c) for m in ("max", "avg")
                                                    for c in (True, False)}
    assert {la.mode for la in pools if la.k > la.stride} == {"max", "avg"}
    convs = [la for la in layers if isinstance(la, Conv)]
    assert any(la.stride > 1 for la in convs) and any(la.pad for la in convs)
    assert any(la.bias for la in convs) and any(la.bias for la in layers
                                                if isinstance(la, Dense))
    hidden = [sum(isinstance(la, Dense) for la in c.chip.mapping.network.layers) - 1
              for c in cases]
    assert set(hidden) == {0, 1, 2}
    assert {c.chip.mapping.network.input_shape[0] for c in cases} == {1, 2, 3}
    adds = [la for la in layers if isinstance(la, Add)]
    assert {la.other.startswith("S") for la in adds} == {True, False}
    # The calibration leaves most cases with logits that depend on the image.
    varied = sum(len({tuple(r) for r in chip_model.run(
        c.chip, c.images, image_ids=c.image_ids).logits.tolist()}) > 1 for c in cases)
    assert varied >= 70, varied
    assert all(np.asarray(c.image_ids).max() < 2 ** 32 for c in cases)
