"""What PEParams and the chip plan refuse, and the crossbar forms as an enum."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from cim_spec import noise, program
from cim_spec.config import ConfigError, SystemConfig
from cim_spec.mapping import map_network
from cim_spec.network import Conv, Dense, Network, Pool
from hdl import build
from hdl.chip import CimChip
from hdl.chip_plan import LayerKind, plan_chip
from hdl.crossbar import Crossbar
from hdl.params import NOISE_MAX_ROWS, CrossbarForm, PEParams
from hdl.pe import PE

SMALL = Network("small", (1, 6, 6), (Conv("A", 1, 2, 3), Pool("P", 2, 2), Dense("D", 8, 3)))


def small_chip(rows: int, read_noise: int) -> program.Chip:
    cfg = SystemConfig(n_pe=2, array_rows=rows, array_cols=16)
    mapping = map_network(cfg, SMALL)
    names = [lm.name for lm in mapping.layers]
    return program.Chip(
        mapping, np.zeros((cfg.n_pe, rows, cfg.array_cols), dtype=np.int64),
        program.Digital(adc_gain={n: 4000 for n in names}, requant_mult={"A": 2 ** 15},
                        requant_shift={"A": 18}, read_noise=read_noise, noise_seed=3))


def test_the_row_field_of_the_noise_key_holds_256_rows():
    """Why the limit: with a 257th row, line (slot 1, row 0) and (slot 0, row 256) would get
    the same key (docs/datapath.md section 6), so the same noise."""
    nonce = np.uint32(0x1234567)
    assert noise.line_hash(7, nonce, 1, 0) == noise.line_hash(7, nonce, 0, NOISE_MAX_ROWS)
    keys = {int(noise.line_hash(7, nonce, k, r)) for k in range(16)
            for r in range(NOISE_MAX_ROWS)}
    assert len(keys) == 16 * NOISE_MAX_ROWS


def test_read_noise_refuses_arrays_over_256_rows():
    assert PEParams(rows=NOISE_MAX_ROWS, read_noise=119).rows == NOISE_MAX_ROWS
    assert PEParams(rows=NOISE_MAX_ROWS + 2, read_noise=0).rows == NOISE_MAX_ROWS + 2
    with pytest.raises(ConfigError, match=r"rows=258: read noise .* at most 256 rows"):
        PEParams(rows=NOISE_MAX_ROWS + 2, read_noise=1)
    with pytest.raises(ConfigError, match="rows=512"):
        PEParams.from_config(SystemConfig(array_rows=512), read_noise=119)


def test_chip_plan_refuses_read_noise_on_large_arrays():
    with pytest.raises(ConfigError, match="rows=258"):
        plan_chip(small_chip(258, read_noise=50))
    plan = plan_chip(small_chip(258, read_noise=0))          # without noise: any size
    assert plan.pes[0].params.rows == 258
    assert [lp.kind for lp in plan.layers] == [LayerKind.CONV, LayerKind.DENSE]
    assert plan_chip(small_chip(256, read_noise=50)).pes[0].params.read_noise == 50


def test_crossbar_forms_are_an_enum():
    """The gateware takes CrossbarForm members; names are converted at the edge."""
    assert [f.value for f in CrossbarForm] == ["verilog", "amaranth", "blackbox"]
    assert CrossbarForm("amaranth") is CrossbarForm.AMARANTH
    p = PEParams(max_lines=24)
    plan = plan_chip(small_chip(32, 0))
    with warnings.catch_warnings():
        # The refused components exist (their __init__ raised) and are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        for make in (lambda f: Crossbar(p, form=f), lambda f: PE(p, form=f),
                     lambda f: CimChip(plan, form=f), lambda f: p.busy_cycles(1, 24, f),
                     build.macro_sources):
            with pytest.raises(TypeError, match="CrossbarForm"):
                make("amaranth")
        gc.collect()
    assert p.crossbar_cycles(24, CrossbarForm.AMARANTH) == -(-24 // p.lanes) + 2
    assert p.crossbar_cycles(24, CrossbarForm.BLACKBOX) == 1
