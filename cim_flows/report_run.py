"""What `cim report` reads from a run directory before it draws anything: the chip state and
its network, the configuration, the RTL simulation's figures (and whether they are of that
network), the digital periphery's size.

The run's network is the newest chip state's (``cim program`` / ``cim hybrid`` / ``cim demo
--out``), on that state's own mapping; without a chip state it is the bundled mCNN. The
mapping, cycles and energy sections are all of that network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cim_spec.config import ConfigError, SystemConfig

from .report_page import load_json


@dataclass
class RunInfo:
    """The run directory's network on its chip, and where each part came from."""

    cfg: SystemConfig
    cfg_source: str
    mapping: object                   # cim_spec.mapping.Mapping
    network_source: str
    state: object | None              # cim_spec.chipstate.ChipState of the newest chip state
    state_path: Path | None
    sim: dict | None                  # sim.json, whichever network it is of

    @property
    def network(self):
        return self.mapping.network

    @property
    def label(self) -> str:
        return network_label(self.network)

    @property
    def is_mcnn(self) -> bool:
        return is_mcnn(self.network)

    def sim_of_network(self) -> bool:
        """Whether sim.json measured this run's network at this replication."""
        return bool(self.sim) and sim_matches(self.sim, self.network) \
            and _sim_replication(self.sim) == self.cfg.replication


def is_mcnn(net) -> bool:
    """The paper's network, whatever name a file gave it (a round trip through ONNX keeps
    the layers)."""
    import dataclasses

    from cim_spec.network import MCNN
    return dataclasses.replace(net, name=MCNN.name) == MCNN


def network_label(net) -> str:
    return "mCNN" if is_mcnn(net) else net.name


def chip_states(run: Path) -> list[Path]:
    return sorted(p for p in Path(run).glob("*.json")
                  if (load_json(p) or {}).get("schema") == "cim-chip-state")


def newest_chip_state(run: Path) -> Path | None:
    paths = chip_states(run)
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def read_run(run: Path, cfg: SystemConfig | None = None) -> RunInfo:
    """The run's network, mapping and configuration. A configuration given on the command line
    maps the chip state's network anew (a network that does not fit says how many PEs it
    needs); otherwise the chip state's own mapping is the one shown."""
    from cim_spec import chipstate
    from cim_spec.mapping import map_network
    from cim_spec.network import MCNN
    run = Path(run)
    path = newest_chip_state(run)
    state = chipstate.load(path) if path is not None else None
    if cfg is not None:
        source = "from the command line"
    elif state is not None:
        cfg, source = state.config, f"from {path.name}"
    else:
        st = load_json(run / "stages.json")
        if isinstance(st, dict) and "replication" in st:
            cfg, source = SystemConfig(replication=int(st["replication"])), \
                "stages.json's replication"
        else:
            cfg, source = SystemConfig(), "default"
    if state is None:
        mapping, net_source = map_network(cfg, MCNN), "the bundled mCNN (no chip state here)"
    elif state.config == cfg:
        mapping, net_source = state.mapping, f"{path.name}, on its own mapping"
    else:
        mapping = map_network(cfg, state.mapping.network)
        net_source = f"{path.name}, mapped onto the command line's configuration"
    sim = load_json(run / "sim.json")
    return RunInfo(cfg, source, mapping, net_source, state, path,
                   sim if isinstance(sim, dict) else None)


def sim_matches(sim: dict, network) -> bool:
    """Whether an RTL summary (sim.json) is of `network`: the network it names (`cim sim`
    records it), else its per-layer cycles' layer names; a summary with neither predates
    other networks and is the mCNN's."""
    if "network" in sim:
        return sim["network"] == network.name or (is_mcnn(network) and sim["network"] == "mcnn")
    layers = sim.get("cycles_per_layer")
    if isinstance(layers, dict) and layers:
        return set(layers) == {layer.name for layer in network.weight_layers()}
    return is_mcnn(network)


def _sim_replication(sim: dict):
    return sim.get("replication", 1)


def measured_cycles(run: Path, network=None) -> dict[int, int]:
    """Cycles per image the RTL simulation measured ({replication: cycles}); a stand-in
    sim.json measured nothing, and with `network` given a simulation of another network
    measured nothing for it."""
    path = Path(run) / "sim.json"
    sim = load_json(path) or {}
    if not isinstance(sim, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    if sim.get("stand_in") or not sim.get("cycles_per_image"):
        return {}
    if network is not None and not sim_matches(sim, network):
        return {}
    cycles, rep = sim["cycles_per_image"], _sim_replication(sim)
    if isinstance(cycles, bool) or not isinstance(cycles, (int, float)) \
            or not np.isfinite(cycles) or cycles < 1:
        raise ConfigError(f"{path}: cycles_per_image must be a number >= 1, got {cycles!r}")
    if isinstance(rep, bool) or not isinstance(rep, int) or rep < 1:
        raise ConfigError(f"{path}: replication must be an integer >= 1, got {rep!r}")
    return {rep: round(cycles)}


def digital_nand2_eq(run: Path) -> tuple[float | None, str | None]:
    """NAND2 equivalents of the digital periphery from the ASIC-view synthesis (generic
    target), leaving out the ADC module: in silicon the ADC and its gain are analog (counted
    by the macro model). A PE-only result counts once per PE. The ASIC flow's real cells
    (`cim asic`), when the run has them, come first."""
    from .asic_report import nand2_eq
    gates, name = nand2_eq(run)
    if gates is not None:
        return gates, name
    for name, per_pe in (("synth_chip_generic_asic.json", False),
                         ("synth_pe_generic_asic.json", True)):
        r = load_json(Path(run) / name)
        if not r:
            continue
        try:
            adc = sum(row["total"].get("nand2_eq", 0) for row in r["modules"]
                      if row["module"].split(".")[-1] == "adc")
            gates = float(r["totals"].get("nand2_eq", 0) - adc)
            if per_pe:
                gates *= SystemConfig.from_dict(r["config"]).n_pe
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ConfigError(f"{Path(run) / name}: not a synthesis result "
                              f"({type(e).__name__}: {e})") from None
        if not (np.isfinite(gates) and gates >= 0):
            raise ConfigError(f"{Path(run) / name}: digital periphery of {gates} NAND2 eq.")
        return gates, name
    return None, None
