"""`cim sweep SPEC.toml`: design-space and Monte Carlo sweeps on Dask (cim_flows.sweep).
Registered by cim_cli.main."""

from __future__ import annotations

from pathlib import Path

from .common import add_force, emit, refuse_with

DEFAULT_OUT = Path("build/run/sweep")   # inside the default run directory: `cim report` finds it


def cmd_sweep(args) -> int:
    from cim_flows import sweep, sweep_spec
    refuse_with(args, "with --scheduler (the cluster has its workers)",
                {"--workers": args.scheduler is not None and args.workers is not None})
    spec = sweep_spec.load(args.spec)
    summary = sweep.run(spec, args.out, data_path=args.data, scheduler=args.scheduler,
                        workers=args.workers, force=args.force, progress=not args.json)
    rows = sweep.read_table(args.out / "sweep.parquet")
    chips = f"{len(spec.seeds)} chip{'s' if len(spec.seeds) > 1 else ''}"
    text = [f"sweep {args.spec}: {summary['points']} points ({chips} each), "
            f"{summary['ran']} run now on {summary['executor']} in {summary['seconds']:.1f} s; "
            f"done {summary['done']}, failed {summary['failed']}, remaining "
            f"{summary['remaining']}", "", *mean_table(spec, rows), "",
            f"wrote {args.out / 'sweep.parquet'}, sweep.csv, sweep.json and points/"]
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed[:5]:
        text.insert(1, f"  failed point {r['key']} (seed {r['seed']}): {r['error']}")
    emit(args, {**{k: summary[k] for k in ("points", "done", "failed", "remaining", "ran",
                                           "seconds", "executor")},
                "out": str(args.out), "table": str(args.out / "sweep.parquet")}, "\n".join(text))
    return 0


def mean_table(spec, rows: list[dict]) -> list[str]:
    """Mean and spread over the chips of each combination, one line per combination."""
    import numpy as np
    axes, stages = list(spec.axes), spec.stage_columns()
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault(tuple(r[a] for a in axes), []).append(r)
    head = [*axes, "chips", *(s.removeprefix("accuracy_") for s in stages), "uJ/image"]
    lines = ["  ".join(f"{h:>12}" for h in head)]
    for combo, rs in groups.items():
        cells = [f"{v:>12g}" for v in combo] + [f"{len(rs):>12}"]
        for s in stages:
            a = 100 * np.array([r[s] for r in rs])
            cells.append(f"{f'{a.mean():.2f}+-{a.std():.2f}':>12}")
        cells.append(f"{rs[0]['energy_per_image_uj']:>12.3f}")
        lines.append("  ".join(cells))
    return lines


def register(sub) -> None:
    sp = sub.add_parser("sweep", help="design-space / Monte Carlo sweep of a TOML spec on Dask "
                        "(accuracy per stage, cycles, energy, area per point)")
    sp.add_argument("spec", type=Path, help="sweep spec (examples/sweep_showcase.toml)")
    sp.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"sweep directory (default {DEFAULT_OUT}); a rerun resumes it")
    sp.add_argument("--scheduler", help="address of a running Dask scheduler, "
                    "tcp://HOST:8786 (default: a LocalCluster)")
    sp.add_argument("--workers", type=int, help="LocalCluster worker processes (default one "
                    "per core; 0: in this process, without Dask)")
    sp.add_argument("--data", type=Path, help="MNIST: IDX directory or mnist.npz "
                    "(default: the bundled subset)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    add_force(sp)
    sp.set_defaults(func=cmd_sweep)
