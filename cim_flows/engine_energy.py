"""Energy of the on-chip update engine (hdl/update_engine.py, golden/update_engine.py): the
digital work of its rule and the programming pulses it asks for, in the units and at the node
of cim_flows.energy (docs/energy.md, "Update engine").

Per image the engine sees (updating or not) it scans the logits: ``n_out - 1`` comparisons for
the strongest wrong class and one subtraction and comparison against the margin, each
``logit_bits`` wide. Per updating image it reads, updates and writes back two accumulator rows
(the true and the strongest wrong class): ``2 * n_in`` accumulators of ``acc_bits`` read and
written in the accumulator memory (SRAM, priced per byte as the feature buffer), ``2 * n_in``
saturating adds and two threshold comparisons per accumulator. Per request one more add gives
the threshold back. Per pulse applied the cell takes ``V^2 * G * t``: the assumed programming
voltage across a cell at the window's top conductance (an upper bound of its current) for
a pulse as long as the configured read pulse.
"""

from __future__ import annotations

from dataclasses import dataclass

from cim_spec.config import PAPER, ConfigError, SystemConfig

from .energy import EnergyParams

DEFAULT = EnergyParams()


@dataclass(frozen=True)
class PulseParams:
    # Not a device parameter of the model (docs/device.md has no voltages): an assumption in
    # the range of 1T1R SET/RESET pulses (about 1.5-2.5 V on the cell).
    program_v: float = 2.0


def _check_shape(n_out: int, n_in: int, acc_bits: int, logit_bits: int) -> None:
    for name, v in (("n_out", n_out), ("n_in", n_in), ("acc_bits", acc_bits),
                    ("logit_bits", logit_bits)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"engine energy: {name} must be an integer >= 1, got {v!r}")


def per_image_pj(n_out: int, logit_bits: int, p: EnergyParams = DEFAULT) -> float:
    """The logit scan every image costs: n_out - 1 comparisons, then the margin's subtraction
    and comparison."""
    _check_shape(n_out, 1, 1, logit_bits)
    return (n_out + 1) * p.add_pj(logit_bits)


def per_update_pj(n_in: int, acc_bits: int, p: EnergyParams = DEFAULT) -> dict:
    """The digital work of one updating image, by kind (pJ): two accumulator rows read and
    written, a saturating add and two threshold comparisons per accumulator."""
    _check_shape(1, n_in, acc_bits, 1)
    accs = 2 * n_in
    return {"memory": 2 * accs * acc_bits / 8 * p.buffer_pj_per_byte,
            "adds": accs * p.add_pj(acc_bits),
            "compares": 2 * accs * p.add_pj(acc_bits)}


def per_request_pj(acc_bits: int, p: EnergyParams = DEFAULT) -> float:
    """Giving the threshold back to the accumulator that fired."""
    return p.add_pj(acc_bits)


def per_pulse_pj(cfg: SystemConfig = PAPER, pp: PulseParams = PulseParams()) -> float:
    """One programming pulse: V^2 G t with G the window's top, t the configured pulse."""
    t_s = cfg.pulse_cycles / (cfg.clock_mhz * 1e6)
    return pp.program_v ** 2 * cfg.g_max_us * 1e-6 * t_s * 1e12


def engine_figures(cfg: SystemConfig = PAPER, n_out: int = 10, n_in: int = 192,
                   acc_bits: int = 12, logit_bits: int = 24, run: dict | None = None,
                   p: EnergyParams = DEFAULT, pp: PulseParams = PulseParams()) -> dict:
    """The engine's energies per event, and with `run` (a chip-state history entry of stage
    "engine": images, epochs, updates, requests, pulses) the run's totals and its energy per
    update (per updating image: its digital work and its share of requests and pulses)."""
    upd = per_update_pj(n_in, acc_bits, p)
    out = {"n_out": n_out, "n_in": n_in, "acc_bits": acc_bits, "logit_bits": logit_bits,
           "per_image_pj": per_image_pj(n_out, logit_bits, p),
           "per_update_digital_pj": upd, "per_update_digital_total_pj": sum(upd.values()),
           "per_request_pj": per_request_pj(acc_bits, p),
           "per_pulse_pj": per_pulse_pj(cfg, pp), "program_v": pp.program_v}
    if run is None:
        return out
    for k in ("images", "epochs", "updates", "requests", "pulses"):
        v = run.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"engine energy: the run's {k} must be an integer >= 0, got {v!r}")
    seen = run["images"] * run["epochs"]
    parts = {"scan": seen * out["per_image_pj"],
             "updates": run["updates"] * out["per_update_digital_total_pj"],
             "requests": run["requests"] * out["per_request_pj"],
             "pulses": run["pulses"] * out["per_pulse_pj"]}
    total = sum(parts.values())
    out["run"] = {**{k: run[k] for k in ("images", "epochs", "updates", "requests", "pulses")},
                  "energy_pj": parts, "total_pj": total,
                  "per_training_image_pj": total / seen if seen else 0.0,
                  "per_update_pj": (parts["updates"] + parts["requests"] + parts["pulses"])
                  / run["updates"] if run["updates"] else 0.0}
    return out


def assumptions(p: EnergyParams = DEFAULT, pp: PulseParams = PulseParams()) -> list[str]:
    return [
        "Update engine, digital: per image the logit scan (n_out - 1 comparisons, the margin's "
        "subtraction and comparison, logit_bits wide); per updating image two accumulator "
        "rows (2 x n_in accumulators) read and written in the accumulator memory at the "
        f"feature buffer's {p.buffer_pj_per_byte:.2f} pJ per byte (an 8 KB SRAM's figure: an "
        "upper bound for the engine's 2,880 bytes), a saturating add and two threshold "
        "comparisons per accumulator, one add per request to give the threshold back; each "
        "add or comparison is an acc_bits- or logit_bits-wide add.",
        f"Update engine, pulses: V^2 G t per pulse applied, V = {pp.program_v} V (assumed; the "
        "device model has no voltages), G the programming window's top (g_max_us, an upper "
        "bound of the cell's conductance), t the configured pulse (pulse_cycles / clock_mhz); "
        "no driver, line-charging or verify-read energy (the engine's pulses are not "
        "verified).",
    ]
