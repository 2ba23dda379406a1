"""`cim sweep`: design-space and Monte Carlo sweeps on Dask distributed.

A point (cim_flows.sweep_spec.Point) is one task: program a chip instance with the point's
configuration and device, run its stages on the test images, add the mapping's cycles and the
energy model's figures. The task is a pure function of its inputs: every random draw comes from
the point's chip seed (the transfer, hybrid training, relaxation and read noise all derive
their streams from it), so a row is the same, bit for bit, in this process, on a LocalCluster
or on a remote worker.

Each point is keyed by a hash of everything it depends on. Its result is written to
``DIR/points/KEY.json`` the moment it arrives; a rerun skips the keys already done (and retries
the failed ones), and the table (``sweep.parquet``, ``sweep.csv``, ``sweep.json``) is assembled
from the point files, also after Ctrl-C. A failing point records its error and the sweep goes
on.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import time
import traceback
from pathlib import Path

import numpy as np

from cim_spec import files
from cim_spec.config import SystemConfig
from cim_spec.device_params import DeviceParams

from .sweep_spec import SweepSpec

SCHEMA = "cim-sweep-1"          # part of every key: a change of what a point means bumps it
TABLE_FILES = ("sweep.parquet", "sweep.csv", "sweep.json")
FIXED_COLUMNS = ("key", "status", "seed")
WAIT_WORKERS_S = 60
RESULT_COLUMNS = ("cycles_per_image", "cycles_source", "energy_per_image_uj", "area_mm2",
                  "images_per_s", "images", "error")


# ---------------------------------------------------------------------------------------------
# Data and keys

def prepare_data(spec: SweepSpec, data_path=None) -> dict:
    """The arrays every point reads (shipped once per worker) and their fingerprint."""
    from cim_flows import stages
    from golden import data
    d = data.load(data_path)
    if spec.images > d.n_test:
        raise _spec_error(spec, "images", f"{spec.images} test images asked, the data set "
                                          f"has {d.n_test}")
    payload = {"test_images": d.test_images[:spec.images],
               "test_labels": d.test_labels[:spec.images]}
    if "hybrid" in spec.stages:
        if spec.hybrid_images > d.n_train:
            raise _spec_error(spec, "hybrid_images", f"{spec.hybrid_images} training images "
                                                     f"asked, the data set has {d.n_train}")
        payload["train_images"], payload["train_labels"] = stages.hybrid_subset(
            d, None, spec.hybrid_images, 0)
    h = hashlib.sha256()
    for k in sorted(payload):
        h.update(k.encode())
        h.update(np.ascontiguousarray(payload[k]).tobytes())
    payload["fingerprint"] = h.hexdigest()
    return payload


def _spec_error(spec: SweepSpec, key: str, why: str):
    from .sweep_spec import SpecError
    return SpecError(f"{spec.path}: sweep.{key}: {why}")


def task_of(spec: SweepSpec, point, fingerprint: str) -> dict:
    """Everything a point's result depends on, as plain data, and its key."""
    inputs = {"schema": SCHEMA, "system": point.system.to_dict(),
              "device": point.device.to_dict(), "seed": point.seed,
              "stages": list(spec.stages), "ages": list(spec.ages),
              "images": spec.images, "hybrid_images": spec.hybrid_images,
              "data": fingerprint, "weights": _weights_digest()}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    return {"key": key, "values": [[k, v] for k, v in point.values], **inputs}


@functools.cache
def _weights_digest() -> str:
    from golden import model_file
    return hashlib.sha256(Path(model_file.BUNDLED_WEIGHTS).read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# One point (runs on a worker)

@functools.cache
def _model():
    from cim_flows import stages
    return stages.load_model()


@functools.lru_cache(maxsize=64)   # a few MB: the configurations of a sweep
def _compiled(cfg: SystemConfig):
    """The quantized program of a configuration: the seeds of a combination share it (the
    calibration is the slow part of a point)."""
    from cim_flows import stages
    return stages.ideal_program(cfg, _model())


def run_point(task: dict, data: dict, threads: int | None = 1) -> dict:
    """The row of one point; an exception becomes a failed row with its error."""
    t0 = time.perf_counter()
    row = {"key": task["key"], "status": "ok", "seed": task["seed"],
           **{k: v for k, v in task["values"]}}
    try:
        from golden import chip_model
        # Every model run of the point (calibration, transfer, hybrid, ages) on `threads`.
        with chip_model.thread_budget(threads):
            row.update(_evaluate(task, data, threads))
        row["error"] = None
    except Exception as e:  # noqa: BLE001 -- a failing point is recorded, the sweep goes on
        last = traceback.extract_tb(e.__traceback__)[-1]
        row.update(status="failed", error=f"{type(e).__name__}: {e} "
                                          f"({Path(last.filename).name}:{last.lineno})")
    return {"schema": "cim-sweep-point", "key": task["key"], "row": row, "inputs": task,
            "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()}


def _evaluate(task: dict, data: dict, threads: int | None) -> dict:
    from cim_flows import energy
    from golden import drift, hybrid, transfer
    cfg = SystemConfig.from_dict(task["system"])
    dev = DeviceParams.from_dict(task["device"])
    seed = task["seed"]
    images, labels = data["test_images"], data["test_labels"]
    out = {}
    mapping, prog = _compiled(cfg)
    state = transfer.program_chip(mapping, prog, dev, seed)
    if "transfer" in task["stages"]:
        out["accuracy_transfer"] = _accuracy(state.chip, images, labels, threads)
    if "hybrid" in task["stages"]:
        state, _ = hybrid.train(state, data["train_images"], data["train_labels"],
                                hybrid.HybridParams(seed=seed), progress=False)
        out["accuracy_hybrid"] = _accuracy(state.chip, images, labels, threads)
    for age in task["ages"]:
        # The relaxation of the last stage's chip (hybrid-trained when there is one).
        aged = drift.aged(state, age)
        out[f"accuracy_aged_{age:g}s"] = _accuracy(aged.chip, images, labels, threads)
    e = energy.system(cfg)
    out.update(cycles_per_image=e["cycles_per_image"], cycles_source=e["cycles_source"],
               energy_per_image_uj=e["energy_per_image_uj"], area_mm2=e["area_mm2"],
               images_per_s=e["images_per_s"], images=len(labels))
    return out


def _accuracy(chip, images, labels, threads) -> float:
    from golden import chip_model
    ids = np.arange(len(images))
    pred = chip_model.run(chip, images, image_ids=ids, workers=threads).predictions
    return int((pred == labels).sum()) / len(labels)


# ---------------------------------------------------------------------------------------------
# The table

def point_path(out: Path, key: str) -> Path:
    return Path(out) / "points" / f"{key}.json"


def read_point(out: Path, key: str) -> dict | None:
    """A point's stored result, or None when it is missing or unreadable (then it reruns)."""
    try:
        doc = json.loads(point_path(out, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or "row" not in doc:
        return None
    return doc


def columns(spec: SweepSpec) -> list[str]:
    return [*FIXED_COLUMNS, *spec.axes, *spec.stage_columns(), *RESULT_COLUMNS]


def assemble(out: Path, spec: SweepSpec, tasks: list[dict], meta: dict) -> dict:
    """Write sweep.parquet, sweep.csv and sweep.json from the point files of `tasks` (those
    done so far: a partial sweep gives a partial table). Returns the summary."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = columns(spec)
    rows = []
    for t in tasks:
        doc = read_point(out, t["key"])
        if doc is not None:
            rows.append({c: doc["row"].get(c) for c in cols})
    table = pa.Table.from_pylist(rows, schema=_schema(spec, cols)) if rows else \
        pa.Table.from_pylist([], schema=_schema(spec, cols))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    text = io.StringIO()
    w = csv.DictWriter(text, cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                    for k, v in r.items()})
    failed = sum(r["status"] != "ok" for r in rows)
    summary = {"schema": "cim-sweep", "spec": spec.to_dict(), **meta, "points": len(tasks),
               "done": len(rows) - failed, "failed": failed, "remaining": len(tasks) - len(rows),
               "columns": cols, "keys": [t["key"] for t in tasks]}
    out = Path(out)
    # sweep.json last: it says which table the other two files are.
    files.commit([(out / "sweep.parquet", buf.getvalue()),
                  (out / "sweep.csv", text.getvalue().encode()),
                  (out / "sweep.json", (json.dumps(summary, indent=1) + "\n").encode())])
    return summary


def _schema(spec: SweepSpec, cols: list[str]):
    import pyarrow as pa
    types = {"key": pa.string(), "status": pa.string(), "seed": pa.int64(),
             "cycles_per_image": pa.int64(), "cycles_source": pa.string(),
             "energy_per_image_uj": pa.float64(), "area_mm2": pa.float64(),
             "images_per_s": pa.float64(), "images": pa.int64(), "error": pa.string()}
    for c in spec.stage_columns():
        types[c] = pa.float64()
    for name, values in spec.axes.items():
        sample = values[0]
        types[name] = pa.int64() if isinstance(sample, int) else pa.float64()
    return pa.schema([(c, types[c]) for c in cols])


def read_table(path: Path) -> list[dict]:
    """The rows of a sweep.parquet file."""
    import pyarrow.parquet as pq
    return pq.read_table(path).to_pylist()


# ---------------------------------------------------------------------------------------------
# The driver

def check_output(out: Path, spec_hash: str, force: bool) -> None:
    """DIR is new, or holds this spec's sweep (a rerun resumes it), or with `force` another
    sweep (its table is replaced; its point files stay and are reused where keys match)."""
    out = Path(out)
    files.check_output(out, {files.DIRECTORY}, force=True)
    old = out / "sweep.json"
    for name in TABLE_FILES:
        kind = files.kind_of(out / name)
        if kind not in (files.MISSING, files.OTHER, files.JSON):
            raise files.OutputError(f"{out / name} holds {kind}, not a sweep table; "
                                    f"refusing to replace it")
    if old.exists():
        try:
            doc = json.loads(old.read_text())
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict) or doc.get("schema") != "cim-sweep":
            raise files.OutputError(f"{old} exists and is not a sweep's; refusing to replace it")
        if doc.get("spec_hash") != spec_hash and not force:
            raise files.OutputError(f"{out} holds the sweep of another spec "
                                    f"({doc.get('spec', {}).get('path')}); give --force to "
                                    f"replace its table (its points are kept)")


def run(spec: SweepSpec, out: Path, *, data_path=None, scheduler: str | None = None,
        workers: int | None = None, force: bool = False, progress: bool = True) -> dict:
    """Run the points of `spec` not done yet into DIR `out`; returns the summary.

    workers=0 runs the points in this process (no Dask); otherwise a LocalCluster of
    `workers` processes (default: one per core), or the cluster at `scheduler`.
    """
    out = Path(out)
    points = spec.points()
    data = prepare_data(spec, data_path)
    tasks = [task_of(spec, p, data["fingerprint"]) for p in points]
    keys = [t["key"] for t in tasks]
    if len(set(keys)) != len(keys):
        raise _spec_error(spec, "seeds", "two points have the same inputs (repeated axis "
                                         "values after rounding?)")
    spec_hash = hashlib.sha256(json.dumps(
        {**spec.to_dict(), "path": None, "data": data["fingerprint"]},
        sort_keys=True).encode()).hexdigest()[:20]
    check_output(out, spec_hash, force)
    pending = [t for t in tasks if (read_point(out, t["key"]) or {}).get("row", {})
               .get("status") != "ok"]
    # Points of one configuration one after another: a worker calibrates each configuration
    # once (its cache), and the table keeps the spec's order anyway.
    pending.sort(key=lambda t: json.dumps(t["system"], sort_keys=True))
    meta = {"spec_hash": spec_hash, "data": "bundled" if data_path is None else str(data_path),
            "executor": "in-process" if workers == 0 else (scheduler or "LocalCluster")}
    t0 = time.time()
    bar = _Progress(len(tasks), len(tasks) - len(pending), progress)
    try:
        if pending:
            if workers == 0:
                for t in pending:
                    _store(out, run_point(t, data, threads=None), bar)
            else:
                _run_dask(pending, data, out, scheduler, workers, bar)
    finally:
        bar.close()
        meta["seconds"] = round(time.time() - t0, 2)
        meta["ran"] = bar.done + bar.failed
        summary = assemble(out, spec, tasks, meta)
    return summary


def _store(out: Path, doc: dict, bar) -> None:
    files.write_json(point_path(out, doc["key"]), doc)
    bar.update(doc["row"]["status"] == "ok")


def _run_dask(pending: list[dict], data: dict, out: Path, scheduler, workers, bar) -> None:
    import logging

    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as e:
            raise files.OutputError(f"--scheduler {scheduler}: cannot connect: {e}") from None
        try:
            client.wait_for_workers(1, timeout=WAIT_WORKERS_S)
        except TimeoutError:
            client.close()
            raise files.OutputError(f"--scheduler {scheduler}: no worker joined within "
                                    f"{WAIT_WORKERS_S} s") from None
    else:
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        shipped = client.scatter(data, broadcast=True, hash=False)
        n = max(1, len(client.scheduler_info()["workers"]))
        todo = iter(pending)
        by_future = {}

        def submit():
            t = next(todo, None)
            if t is not None:
                f = client.submit(run_point, t, shipped, key=f"point-{t['key']}", pure=False)
                by_future[f] = t
                return f
            return None

        # A bounded window of submitted points: a million-point spec stays cheap to start.
        ac = as_completed([f for f in (submit() for _ in range(4 * n)) if f is not None])
        for f in ac:
            t = by_future.pop(f)
            try:
                doc = f.result()
            except Exception as e:  # noqa: BLE001 -- a lost worker fails the point, not the sweep
                doc = {"schema": "cim-sweep-point", "key": t["key"], "inputs": t,
                       "row": {"key": t["key"], "status": "failed", "seed": t["seed"],
                               **{k: v for k, v in t["values"]},
                               "error": f"{type(e).__name__}: {e}"}}
            _store(out, doc, bar)
            nxt = submit()
            if nxt is not None:
                ac.add(nxt)
    finally:
        for f in list(by_future):
            f.cancel()
        client.close()
        if cluster is not None:
            cluster.close()


class _Progress:
    """Points done, failed and remaining, on stderr."""

    def __init__(self, total: int, skipped: int, enabled: bool):
        from tqdm import tqdm
        self.done = self.failed = 0
        self.todo = total - skipped
        self.bar = tqdm(total=self.todo, desc="sweep", unit="pt", disable=not enabled,
                        leave=True, dynamic_ncols=True)
        if enabled and skipped:
            self.bar.write(f"sweep: {skipped} of {total} points already done, skipped")
        self._post()

    def _post(self, refresh: bool = True):
        self.bar.set_postfix(done=self.done, failed=self.failed,
                             remaining=self.todo - self.done - self.failed, refresh=refresh)

    def update(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self._post(refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
