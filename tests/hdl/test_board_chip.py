"""The chip board top's clock and serial-rate choices (no simulation: hdl/board_chip.py's
protocol runs end to end in tests/cim_flows/test_board_link.py)."""

from dataclasses import replace

import numpy as np
import pytest

from cim_spec import link, program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from golden import chip_model
from hdl.board_chip import ChipHost
from hdl.board_clock import pll_params, uart_divisor
from hdl.chip import CimChip
from hdl.chip_plan import plan_chip
from hdl.params import CrossbarForm

from .sim_helpers import run


@pytest.mark.parametrize("mhz", [50.0, 75.0, 100.0, 62.5, 40.0, 33.3333])
def test_pll_settings_make_the_frequency_within_the_ecp5_ranges(mhz):
    s = pll_params(25.0, mhz)
    pfd = 25.0 / s["CLKI_DIV"]
    out = pfd * s["CLKFB_DIV"]
    assert out == pytest.approx(mhz, rel=1e-3) and out == s["mhz"]
    assert 3.125 <= pfd <= 400 and 400 <= out * s["CLKOP_DIV"] <= 800
    assert s["CLKOP_CPHASE"] == s["CLKOP_DIV"] // 2 - 1


def test_pll_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="EHXPLLL"):
        pll_params(25.0, 5000.0)


def test_uart_divisor_is_exact_or_refused():
    assert uart_divisor(50e6, 2_000_000) == 25
    assert uart_divisor(75e6, 3_000_000) == 25
    assert uart_divisor(100e6, 3_000_000) == 33          # 1% fast: within the 2%
    with pytest.raises(ValueError, match="off by more"):
        uart_divisor(50e6, 3_000_000, tolerance=0.01)  # 17 cycles: 1.96% off
    with pytest.raises(ValueError, match="off by more"):
        uart_divisor(10e6, 3_000_000)                   # fewer than 4 cycles per bit


TINY = Network("tiny", (1, 4, 4), (Conv("A", 1, 2, 3), Pool("P", 2, 2), Dense("D", 2, 2)))


def tiny_chip(seed=3):
    cfg = SystemConfig(n_pe=2, array_rows=32, array_cols=16)
    mapping = map_network(cfg, TINY)
    names = [lm.name for lm in mapping.layers]
    rng = np.random.default_rng(seed)
    return program.Chip(mapping, rng.integers(0, cfg.code_max + 1, size=(2, 32, 16)),
                        program.Digital(adc_gain={n: 9000 for n in names},
                                        requant_mult={"A": 2 ** 15}, requant_shift={"A": 16},
                                        read_noise=40, noise_seed=1))


def exchange(dut, frames, divisor, gap=2500):
    """Send `frames` to a ChipHost as 8N1 waveforms, `gap` cycles after each (its reply or
    the chip's result comes before the next frame: the host's window shrunk to one keeps the
    expected order simple); returns the decoded replies and the decoder."""
    dec = link.Decoder()
    replies = []
    line = {"state": None, "count": 0, "bits": []}

    async def tick(ctx):
        _, _, tx = await ctx.tick().sample(dut.tx)
        st = line
        if st["state"] is None:
            if not tx:
                st["state"], st["count"], st["bits"] = "bits", divisor + divisor // 2, []
        else:
            st["count"] -= 1
            if st["count"] == 0:
                if len(st["bits"]) < 8:
                    st["bits"].append(tx)
                    st["count"] = divisor
                else:
                    assert tx == 1, "stop bit"
                    replies.extend(dec.feed(bytes([sum(b << k for k, b in
                                                       enumerate(st["bits"]))])))
                    st["state"] = None

    async def bench(ctx):
        for frame in frames:
            for byte in frame:
                for level in [0, *[(byte >> k) & 1 for k in range(8)], 1]:
                    for _ in range(divisor):
                        ctx.set(dut.rx, level)
                        await tick(ctx)
            for _ in range(gap):
                await tick(ctx)

    run(dut, bench)
    return replies, dec


def test_chip_host_answers_frames_over_its_serial_pins():
    """The protocol around a small chip under amaranth.sim, bytes as 8N1 waveforms: two
    images (bit-exact logits with their ids and cycle counts), a corrupt image (NAK, and the
    chip never sees it), a cell write (acknowledged, and the next image follows it), a
    status. (The same host logic runs with the full chip on Verilator in
    tests/cim_flows/test_board_link.py.)"""
    divisor = 4
    chip = tiny_chip()
    dut = ChipHost(CimChip(plan_chip(chip), CrossbarForm.AMARANTH), divisor)
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, size=(3, 4, 4)).astype(np.uint8)
    bad = bytearray(link.image_frame(77, imgs[2].ravel()))
    bad[12] ^= 1
    cell = (1, 5, 3, 200)
    frames = [link.image_frame(10, imgs[0].ravel()), link.image_frame(11, imgs[1].ravel()),
              bytes(bad), link.prog_frame(*cell), link.image_frame(12, imgs[2].ravel()),
              link.encode(link.Cmd.STATUS)]
    replies, dec = exchange(dut, frames, divisor)
    new = chip.conductance.copy()
    new[cell[0], cell[1], cell[2]] = cell[3]
    changed = program.Chip(chip.mapping, new, chip.digital)
    gold = chip_model.run(chip, imgs[:2], image_ids=np.array([10, 11])).logits
    gold2 = chip_model.run(changed, imgs[2:], image_ids=np.array([12])).logits
    kinds = [k for k, _ in replies]
    assert kinds == [link.Reply.RESULT, link.Reply.RESULT, link.Reply.NAK, link.Reply.PROG_ACK,
                     link.Reply.RESULT, link.Reply.STATUS], kinds
    results = [link.parse_result(p, 2, 2) for k, p in replies if k == link.Reply.RESULT]
    assert [r.image_id for r in results] == [10, 11, 12]
    assert [list(r.logits) for r in results] == [*gold.tolist(), *gold2.tolist()]
    # The first of equal maxima (np.argmax), as the chip's own label.
    assert [r.label for r in results] == [int(np.argmax(v)) for v in [*gold, *gold2]]
    assert all(r.cycles_image >= sum(r.cycles_layer) > 0 for r in results)
    assert replies[2][1] == bytes([link.Nak.CRC, link.Cmd.IMAGE])
    assert replies[3][1] == link.prog_frame(*cell)[4:-2]
    st = link.parse_status(replies[5][1])
    assert (st.images_done, st.accepted, st.rejected, st.busy) == (3, 5, 1, False)
    assert dec.errors == []


WIDER = Network("wider", (1, 6, 6), (Conv("A", 1, 3, 3), Pool("P", 2, 2), Dense("D", 12, 2)))


def test_chip_host_returns_features_and_writes_gains():
    """A chip with its features stream: IMAGE_FEATURES is answered with the logits and the
    last weight layer's input map (the golden model's P output, 3 channels x 4 positions);
    GAIN frames set a layer's ADC gain register between images (acknowledged, and the next
    image follows the new gains); gain frames outside the register are refused (RANGE) and
    change nothing; a plain IMAGE is still answered with a plain RESULT."""
    divisor = 4
    cfg = SystemConfig(n_pe=2, array_rows=32, array_cols=16)
    mapping = map_network(cfg, WIDER)
    rng = np.random.default_rng(8)
    chip = program.Chip(mapping, rng.integers(0, cfg.code_max + 1, size=(2, 32, 16)),
                        program.Digital(adc_gain={"A": 9000, "D": 7000},
                                        requant_mult={"A": 2 ** 15}, requant_shift={"A": 15},
                                        read_noise=40, noise_seed=2))
    plan = plan_chip(chip)
    top = 2 ** plan.pes[0].params.gain_bits - 1
    dut = ChipHost(CimChip(plan, CrossbarForm.AMARANTH, features=True), divisor)
    assert (dut.feature_shape, dut.feature_bytes) == ((3, 4, 8), 12)
    imgs = rng.integers(0, 256, size=(3, 6, 6)).astype(np.uint8)
    gains = {"A": 11000, "D": top}        # C1-like layer up, the FC-like one at the edge
    frames = [link.image_frame(20, imgs[0].ravel(), features=True),
              link.gain_frame(0, gains["A"]), link.gain_frame(1, gains["D"]),
              link.gain_frame(2, 5000), link.gain_frame(0, 0), link.gain_frame(1, top + 1),
              link.image_frame(21, imgs[1].ravel(), features=True),
              link.image_frame(22, imgs[2].ravel()), link.encode(link.Cmd.STATUS)]
    replies, dec = exchange(dut, frames, divisor, gap=4000)
    kinds = [k for k, _ in replies]
    assert kinds == [link.Reply.RESULT_FEATURES, link.Reply.GAIN_ACK, link.Reply.GAIN_ACK,
                     link.Reply.NAK, link.Reply.NAK, link.Reply.NAK,
                     link.Reply.RESULT_FEATURES, link.Reply.RESULT, link.Reply.STATUS], kinds
    assert replies[1][1] == link.gain_frame(0, gains["A"])[4:-2]
    assert replies[2][1] == link.gain_frame(1, gains["D"])[4:-2]
    assert [p for _, p in replies[3:6]] == [bytes([link.Nak.RANGE, link.Cmd.GAIN])] * 3
    after = program.Chip(mapping, chip.conductance, replace(chip.digital, adc_gain=gains))
    for (_, payload), c, i in ((replies[0], chip, 0), (replies[6], after, 1)):
        r, feats = link.parse_result_features(payload, 2, 2, 3, 4, 8)
        want = chip_model.run(c, imgs[i:i + 1], image_ids=np.array([20 + i]), trace=True)
        assert r.image_id == 20 + i
        assert list(r.logits) == want.logits[0].tolist()
        assert feats == want.trace["P"].reshape(-1).tolist()
    # The gains changed both layers: the new answers differ from the old chip's.
    old = chip_model.run(chip, imgs[1:], image_ids=np.array([21, 22]), trace=True)
    new = chip_model.run(after, imgs[1:], image_ids=np.array([21, 22]), trace=True)
    assert (old.logits != new.logits).any(axis=1).all()
    assert (old.trace["P"] != new.trace["P"]).any()
    r = link.parse_result(replies[7][1], 2, 2)
    assert (r.image_id, list(r.logits)) == (22, new.logits[1].tolist())
    st = link.parse_status(replies[8][1])
    assert (st.images_done, st.accepted, st.rejected) == (3, 6, 3)
    assert dec.errors == []
