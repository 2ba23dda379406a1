"""The chip board top's clock and serial-rate choices (no simulation: hdl/board_chip.py's
protocol runs end to end in tests/cim_flows/test_board_link.py)."""

import numpy as np
import pytest

from cim_spec import link, program
from cim_spec.config import SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from golden import chip_model
from hdl.board_chip import ChipHost, pll_params, uart_divisor
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
    dec = link.Decoder()
    replies = []

    async def bench(ctx):
        for frame in frames:
            for byte in frame:
                for level in [0, *[(byte >> k) & 1 for k in range(8)], 1]:
                    for _ in range(divisor):
                        ctx.set(dut.rx, level)
                        await tick(ctx)
            # A frame's reply (or the chip's result) before the next frame: the host's
            # window, shrunk to one to keep the expected order simple.
            for _ in range(2500):
                await tick(ctx)

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

    run(dut, bench)
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
