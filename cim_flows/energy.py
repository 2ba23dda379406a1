"""Energy and area of the arrays and their periphery, from event counts.

Energies are per event: one read slot of the array, one driven input line, one sampled
output line, one ADC conversion, one digital operation. The analog defaults are the paper's
per-slot figures for its 128 x 128 benchmark core at 8-bit inputs (docs/energy.md); the
digital ones are Horowitz's 45 nm figures (ISSCC 2014) scaled to the paper's 130 nm node.
docs/energy.md derives the op-counting convention and the digital term that reproduce the
paper's 11,014 GOPS/W, and lists every assumption; `assumptions()` returns the same list.

Event counts come from the mapping (`cim_flows.events.network_events`, one image of any
mapped network) or from anyone who can count them (RTL counters): `energy(events)` takes an
`Events`. `system(cfg, network=NET)` (or `system_for(mapping)`) gives a network's energy per
image, its breakdown, cycles, GOPS/W and area on the configured chip.
"""

from __future__ import annotations

from dataclasses import dataclass

from cim_spec.config import PAPER, ConfigError, SystemConfig

from .events import Events, mapping_cycles, network_events, slot_cycles  # noqa: F401 (interface)

PAPER_GOPS_PER_W = 11014.0
PAPER_GOPS_PER_MM2 = 1164.0


@dataclass(frozen=True)
class EnergyParams:
    # The paper's benchmark core: one slot of a core_inputs x core_outputs array.
    core_inputs: int = 128
    core_outputs: int = 128
    array_pj_per_slot: float = 0.91
    drivers_mux_pj_per_slot: float = 1.72
    sample_hold_pj_per_slot: float = 19.2
    adc_pj_per_conversion: float = 2.55
    # Share of the drivers/MUX figure spent on the input drivers (the rest: output MUX).
    driver_share: float = 0.5
    # Digital, Horowitz ISSCC 2014 at 45 nm / 0.9 V: a 32-bit add 0.1 pJ, a 32-bit multiply
    # 3.1 pJ, a 64-bit read of an 8 KB SRAM 10 pJ.
    add_pj_per_bit_45: float = 0.1 / 32
    mult_pj_per_bit2_45: float = 3.1 / 32 ** 2
    sram_pj_per_byte_45: float = 10.0 / 8
    # 45 nm / 0.9 V -> 130 nm / 1.2 V: E ~ C V^2 with C ~ feature size.
    node_scale: float = (130 / 45) * (1.2 / 0.9) ** 2
    multiplier_bits: int = 16     # requantization multiplier M (docs/datapath.md section 4)

    @property
    def pj_per_cell_slot(self) -> float:
        return self.array_pj_per_slot / (self.core_inputs * self.core_outputs)

    @property
    def pj_per_input_line_slot(self) -> float:
        return self.drivers_mux_pj_per_slot * self.driver_share / self.core_inputs

    @property
    def pj_per_output_line_slot(self) -> float:
        return self.drivers_mux_pj_per_slot * (1 - self.driver_share) / self.core_outputs

    @property
    def pj_per_sample(self) -> float:
        return self.sample_hold_pj_per_slot / self.core_outputs

    def add_pj(self, bits: int) -> float:
        return self.add_pj_per_bit_45 * bits * self.node_scale

    def mult_pj(self, a_bits: int, b_bits: int) -> float:
        return self.mult_pj_per_bit2_45 * a_bits * b_bits * self.node_scale

    @property
    def buffer_pj_per_byte(self) -> float:
        return self.sram_pj_per_byte_45 * self.node_scale


def widths(cfg: SystemConfig) -> dict:
    """Datapath widths the digital energies depend on (as the RTL's PEParams has them)."""
    acc = cfg.adc_bits + cfg.input_bits + 6          # 16 chunks: bits_for(16) + sign
    # An average pool's sum: windows of up to 63 elements; a residual add: the signed input
    # (act_bits and a sign) plus the rescaled other map, one more bit.
    return {"shift_add": cfg.adc_bits + cfg.input_bits, "psum": acc, "pool": cfg.act_bits,
            "act": cfg.act_bits, "avg_sum": cfg.act_bits + 6, "residual": cfg.act_bits + 2}


def energy(ev: Events, p: EnergyParams = EnergyParams(),
           cfg: SystemConfig | None = None) -> dict:
    """Energy breakdown in pJ, per component (widths from `cfg`, default the paper's)."""
    w = widths(cfg or PAPER)
    return {
        "array": ev.cell_slots * p.pj_per_cell_slot,
        "drivers_mux": (ev.input_line_slots * p.pj_per_input_line_slot
                        + ev.output_line_slots * p.pj_per_output_line_slot),
        "sample_hold": ev.output_line_slots * p.pj_per_sample,
        "adc": ev.conversions * p.adc_pj_per_conversion,
        "shift_add": ev.shift_adds * p.add_pj(w["shift_add"]),
        "psum_add": ev.psum_adds * p.add_pj(w["psum"]),
        "requant": ev.requants * (p.mult_pj(w["psum"], p.multiplier_bits)
                                  + p.add_pj(w["psum"] + p.multiplier_bits)),
        "bias": ev.bias_adds * p.add_pj(w["psum"]),
        "pool": (ev.pool_compares * p.add_pj(w["pool"]) + ev.avg_adds * p.add_pj(w["avg_sum"])
                 + ev.avg_mults * p.mult_pj(w["avg_sum"], p.multiplier_bits)),
        "residual": (ev.res_rescales * (p.mult_pj(w["act"], p.multiplier_bits)
                                        + p.add_pj(w["act"] + p.multiplier_bits))
                     + ev.res_adds * 2 * p.add_pj(w["residual"])),     # the add, the clamp
        "buffer": ev.buffer_bytes * p.buffer_pj_per_byte,
    }


ANALOG = ("array", "drivers_mux", "sample_hold", "adc")
DIGITAL = ("psum_add", "bias", "requant", "pool", "residual")


def breakdown(ev: Events, p: EnergyParams = EnergyParams(),
              cfg: SystemConfig | None = None) -> dict:
    """The energy in pJ by part of the chip: the array, the DACs (bit-line drivers), the
    readout (output MUX and sample-and-hold), the ADCs, the shift-add, the rest of the digital
    datapath (partial sums, biases, requantization, pooling, residual adds), the buffers."""
    e = energy(ev, p, cfg)
    dac = ev.input_line_slots * p.pj_per_input_line_slot
    return {"array": e["array"], "dac": dac,
            "readout": e["drivers_mux"] - dac + e["sample_hold"], "adc": e["adc"],
            "shift_add": e["shift_add"], "digital": sum(e[k] for k in DIGITAL),
            "buffer": e["buffer"]}


@dataclass(frozen=True)
class AreaParams:
    """Per-component areas in um^2 at 130 nm. Only the total of the benchmark core is known
    (through 1,164 GOPS/mm^2); the split is ours and the ADC is the calibrated remainder."""

    feature_um: float = 0.13
    cell_f2: float = 30.0            # 1T1R cell: the access transistor carries SET/RESET current
    driver_um2: float = 25.0         # per input (bit) line: level shifter and pulse driver
    mux_um2: float = 10.0            # per output (source) line: its switch to a sample-and-hold
    sample_hold_um2: float = 50.0    # per output line: ~100 fF MIM capacitor and switch
    adc_um2: float | None = None     # None: calibrated to the paper's 1,164 GOPS/mm^2
    nand2_um2: float = 5.0           # digital: one NAND2 equivalent at 130 nm
    utilization: float = 0.7         # placement density of digital logic

    @property
    def cell_um2(self) -> float:
        return self.cell_f2 * self.feature_um ** 2

    @property
    def adc(self) -> float:
        return self.adc_um2 if self.adc_um2 is not None else calibrated_adc_um2(self)


@dataclass(frozen=True)
class Benchmark:
    """The paper's benchmark core: 128 x 128 cells, 8-bit inputs, 32 ADCs, 50 ns slots."""

    inputs: int = 128
    outputs: int = 128
    input_bits: int = 8
    adcs: int = 32
    slot_ns: float = 50.0


def benchmark_events(b: Benchmark = Benchmark()) -> Events:
    """One 8-bit vector-matrix multiplication on the benchmark core. Every cell counts as one
    MAC (the only op convention that reaches 11,014 GOPS/W; docs/energy.md)."""
    s = b.input_bits
    return Events(slots=s, cell_slots=s * b.inputs * b.outputs, input_line_slots=s * b.inputs,
                  output_line_slots=s * b.outputs, conversions=s * b.outputs,
                  shift_adds=s * b.outputs, macs=b.inputs * b.outputs)


def macro_area_um2(a: AreaParams, cells: int, inputs: int, outputs: int, adcs: int,
                   adc_um2: float | None = None) -> dict:
    return {"array": cells * a.cell_um2, "drivers": inputs * a.driver_um2,
            "mux": outputs * a.mux_um2, "sample_hold": outputs * a.sample_hold_um2,
            "adc": adcs * (a.adc if adc_um2 is None else adc_um2)}


def calibrated_adc_um2(a: AreaParams, b: Benchmark = Benchmark()) -> float:
    """The ADC area that makes the benchmark core reach the paper's GOPS/mm^2."""
    gops = benchmark_events(b).ops / (b.input_bits * b.slot_ns)
    total = gops / PAPER_GOPS_PER_MM2 * 1e6
    rest = sum(macro_area_um2(a, b.inputs * b.outputs, b.inputs, b.outputs, 0, 0).values())
    if rest >= total:
        raise ValueError(f"the assumed non-ADC areas ({rest:.0f} um^2) exceed the benchmark "
                         f"core's {total:.0f} um^2: no ADC area can be calibrated")
    return (total - rest) / b.adcs


def benchmark(p: EnergyParams = EnergyParams(), a: AreaParams = AreaParams(),
              b: Benchmark = Benchmark()) -> dict:
    """GOPS/W and GOPS/mm^2 of the benchmark core, against the paper's figures."""
    ev = benchmark_events(b)
    e = energy(ev, p, SystemConfig(input_bits=b.input_bits, act_bits=b.input_bits))
    seconds = b.input_bits * b.slot_ns * 1e-9
    area = macro_area_um2(a, b.inputs * b.outputs, b.inputs, b.outputs, b.adcs)
    return _figures(ev, e, seconds, sum(area.values()), area) | {
        "paper_gops_per_w": PAPER_GOPS_PER_W, "paper_gops_per_mm2": PAPER_GOPS_PER_MM2}


def _figures(ev: Events, e: dict, seconds: float, area_um2: float, area: dict) -> dict:
    total_pj = sum(e.values())
    gops = ev.ops / seconds / 1e9
    return {"events": ev.to_dict(), "energy_pj": e, "energy_total_pj": total_pj,
            "seconds": seconds, "gops": gops, "gops_per_w": ev.ops / (total_pj * 1e-12) / 1e9,
            "power_mw": total_pj * 1e-12 / seconds * 1e3, "area_um2": area,
            "area_mm2": area_um2 * 1e-6, "gops_per_mm2": gops / (area_um2 * 1e-6)}


# --------------------------------------------------------------------------------------------
# A network on the configured chip

def system(cfg: SystemConfig, p: EnergyParams = EnergyParams(), a: AreaParams = AreaParams(),
           cycles_per_image: int | None = None, digital_nand2_eq: float | None = None,
           periphery_pj_per_image: float | None = None, network=None,
           replicate=None) -> dict:
    """GOPS/W, GOPS/mm^2 and energy per image of the configured chip running `network`
    (a cim_spec.network.Network; default the mCNN), mapped with `replicate` (the conv layers
    to replicate, default all; cim_spec.mapping.map_network). See `system_for`."""
    from cim_spec.mapping import map_network
    from cim_spec.network import MCNN
    return system_for(map_network(cfg, MCNN if network is None else network, replicate), p, a,
                      cycles_per_image, digital_nand2_eq, periphery_pj_per_image)


def system_for(mapping, p: EnergyParams = EnergyParams(), a: AreaParams = AreaParams(),
               cycles_per_image: int | None = None, digital_nand2_eq: float | None = None,
               periphery_pj_per_image: float | None = None) -> dict:
    """The figures of a mapping (cim_spec.mapping.Mapping: its network on its configuration).

    `cycles_per_image`: measured (RTL simulation); default the mapping's lower bound.
    `digital_nand2_eq`: the chip's digital periphery from synthesis (ASIC view); without it
    only the analog macros are counted, as the paper's core figure does.
    `periphery_pj_per_image`: the digital periphery's energy per image measured at gate level
    (cim_flows.asic_report.periphery_energy, at this model's node); it is reported next to
    the model's own figures (`gops_per_w_measured_periphery`: the analog terms plus it, in
    place of the per-operation digital estimates).
    """
    cfg = mapping.config
    per_layer = network_events(mapping)
    ev = sum(per_layer.values(), Events())
    e = energy(ev, p, cfg)
    bound = mapping_cycles(mapping)
    cycles = cycles_per_image if cycles_per_image is not None else sum(bound.values())
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
        raise ConfigError(f"cycles per image must be a positive integer, got {cycles!r}")
    if cycles < sum(bound.values()):
        # Fewer cycles than the read slots take cannot have been measured.
        raise ConfigError(f"{cycles:,} cycles per image (replication {cfg.replication}) is "
                          f"below the mapping's lower bound of {sum(bound.values()):,}")
    seconds = cycles / (cfg.clock_mhz * 1e6)
    pe = macro_area_um2(a, cfg.array_rows * cfg.array_cols, cfg.array_cols, cfg.array_rows,
                        cfg.adcs_per_pe)
    area = {k: cfg.n_pe * v for k, v in pe.items()}
    if digital_nand2_eq is not None:
        area["digital"] = digital_nand2_eq * a.nand2_um2 / a.utilization
    res = _figures(ev, e, seconds, sum(area.values()), area)
    macro_mm2 = sum(v for k, v in area.items() if k != "digital") * 1e-6
    res.update(
        network=mapping.network.name, replication=cfg.replication, n_pe=cfg.n_pe,
        used_pes=len(mapping.used_pes()), cycles_per_image=cycles,
        cycles_source="measured" if cycles_per_image is not None else "mapping lower bound",
        cycles_bound=sum(bound.values()), cycles_bound_per_layer=bound,
        images_per_s=1 / seconds, energy_per_image_uj=sum(e.values()) * 1e-6,
        energy_breakdown_pj=breakdown(ev, p, cfg),
        events_per_layer={k: v.to_dict() for k, v in per_layer.items()},
        energy_per_layer_pj={k: sum(energy(v, p, cfg).values()) for k, v in per_layer.items()},
        macro_gops_per_mm2=res["gops"] / macro_mm2, adc_um2=a.adc)
    if periphery_pj_per_image is not None:
        analog = sum(e[k] for k in ANALOG)
        res.update(periphery_pj_per_image=periphery_pj_per_image,
                   gops_per_w_measured_periphery=ev.ops / (
                       (analog + periphery_pj_per_image) * 1e-12) / 1e9)
    return res


def assumptions(p: EnergyParams = EnergyParams(), a: AreaParams = AreaParams()) -> list[str]:
    w, m = widths(PAPER), p.multiplier_bits
    return [
        f"Analog energies per slot of the 128 x 128 benchmark core (paper): array "
        f"{p.array_pj_per_slot} pJ, drivers/MUX {p.drivers_mux_pj_per_slot} pJ, sample-and-hold "
        f"{p.sample_hold_pj_per_slot} pJ; ADC {p.adc_pj_per_conversion} pJ per conversion.",
        f"Array energy scales with the cells on the selected source lines times the driven bit "
        f"lines ({1e3 * p.pj_per_cell_slot:.4f} fJ per cell and slot), at the benchmark's "
        f"average input activity. A conv's zero padding is a known code 0: the DAC never "
        f"pulses its bit lines (no driver or cell energy), while the read's slots, sampling, "
        f"conversions and shift-adds happen as for any read.",
        f"Drivers/MUX: {100 * p.driver_share:.0f}% of the figure is the input drivers "
        f"({1e3 * p.pj_per_input_line_slot:.2f} fJ per driven bit line and slot), the rest the "
        f"output MUX ({1e3 * p.pj_per_output_line_slot:.2f} fJ per sampled line and slot).",
        f"Sample-and-hold: {p.pj_per_sample:.3f} pJ per sampled line and slot; every sampled line "
        f"is converted once per slot.",
        f"Digital energies: Horowitz (ISSCC 2014) 45 nm figures scaled to 130 nm / 1.2 V by "
        f"x{p.node_scale:.2f} (C ~ feature size, E ~ C V^2): a {w['shift_add']}-bit shift-add "
        f"{p.add_pj(w['shift_add']):.3f} pJ per conversion, a {w['psum']}-bit partial-sum add "
        f"{p.add_pj(w['psum']):.3f} pJ, a requantization "
        f"{p.mult_pj(w['psum'], p.multiplier_bits) + p.add_pj(w['psum'] + 16):.2f} pJ, a bias "
        f"add {p.add_pj(w['psum']):.3f} pJ, a pool comparison {p.add_pj(w['pool']):.3f} pJ, an "
        f"average pool's add ({w['avg_sum']} bits, windows up to 63 elements) "
        f"{p.add_pj(w['avg_sum']):.3f} pJ and its constant-reciprocal multiply "
        f"({w['avg_sum']} x {m} bits) {p.mult_pj(w['avg_sum'], m):.2f} pJ, a residual add's "
        f"rescale ({w['act']} x {m}-bit multiply and its rounding add) "
        f"{p.mult_pj(w['act'], m) + p.add_pj(w['act'] + m):.2f} pJ and its "
        f"add and clamp (two {w['residual']}-bit adds) {2 * p.add_pj(w['residual']):.3f} pJ, "
        f"a buffer byte {p.buffer_pj_per_byte:.2f} pJ.",
        "Ops: 2 per useful multiply-accumulate. The benchmark core counts every one of its "
        "128 x 128 cells as a MAC; a network counts its signed weights (a differential pair of "
        "cells is one MAC) times its output positions, padding included, so it gets half the "
        "ops per cell read.",
        "Partial sums: one add per output per extra chunk (an upper bound: the PE's own "
        "accumulator absorbs chunks that sit in the same PE). Buffer: every operand byte of a "
        "read is fetched (padding is not: the feeder substitutes the 0), every requantized "
        "activation stored once, a residual add's other map fetched once; the pooling "
        "writer's read-modify-write of a pooled word and an average pool's running sums are "
        "not counted. Average pool: per window of n elements n adds (the sum and the "
        "rounding term) and one multiply. Pools and adds are booked to the weight layer "
        "they follow (the RTL fuses them into its merger and pooling writer).",
        "No leakage or clock-tree power; no host, programming or off-chip traffic.",
        f"Area at 130 nm: 1T1R cell {a.cell_f2:.0f} F^2 ({a.cell_um2:.3f} um^2), driver "
        f"{a.driver_um2} um^2 per bit line, MUX {a.mux_um2} um^2 and sample-and-hold "
        f"{a.sample_hold_um2} um^2 per source line; the ADC area ({a.adc:.0f} um^2) is calibrated "
        f"so that the benchmark core (32 ADCs, 50 ns slots) gives the paper's 1,164 GOPS/mm^2.",
        "The benchmark core's area is the analog macro only: 128 digital 16-bit accumulators "
        "at 130 nm alone would be about 2.6x the core's whole area.",
        f"A PE of the configured chip has the benchmark's periphery per line: a driver per bit "
        f"line, a MUX and sample-and-hold per source line, adcs_per_pe ADCs; the chip area "
        f"counts all n_pe PEs, used or not. Digital periphery, when synthesized (ASIC view, "
        f"generic target): NAND2 equivalents without the ADC module (its gain is analog in "
        f"silicon) x {a.nand2_um2} um^2 / {a.utilization:.0%} placement density.",
        "Time per image: measured cycles when an RTL simulation gave them, else the mapping's "
        "lower bound (busiest PE's slots, layers one after another, slot = max(pulse, ADC "
        "rounds + 1) cycles).",
    ]
