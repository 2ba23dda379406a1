import numpy as np
import pytest

from cim_spec.config import SystemConfig
from cim_spec.mapping import MappingError, _Item, _place, map_network
from cim_spec.network import MCNN, Conv, Dense, Network, Pool


@pytest.mark.parametrize("replication", [1, 2, 3])
def test_mcnn_mapping_is_consistent(replication):
    cfg = SystemConfig(replication=replication)
    m = map_network(cfg, MCNN)
    # Blocks never overlap and stay inside their array.
    for pe in range(cfg.n_pe):
        rows = np.zeros(cfg.array_rows, dtype=int)
        for b in (b for b in m.blocks if b.pe == pe):
            assert b.row0 + b.n_rows <= cfg.array_rows and b.n_in <= cfg.array_cols
            rows[b.row0:b.row0 + b.n_rows] += 1
        assert rows.max() <= 1
    # Every (position, chunk) of every layer is computed by a block of that layer and chunk,
    # and every group/chunk covers its whole input range exactly once.
    for lm in m.layers:
        a = m.assign(lm.name)
        assert a.shape == (lm.positions, lm.n_chunks)
        for (p, c), bid in np.ndenumerate(a):
            b = m.blocks[bid]
            assert (b.layer, b.chunk) == (lm.name, c)
            if lm.replicated:
                assert b.group == p * replication // lm.positions
        covered = sorted((b.in0, b.in0 + b.n_in) for b in m.blocks_of(lm.name)
                         if b.group == 0 and b.copy == 0)
        assert covered[0][0] == 0 and covered[-1][1] == lm.n_in
        assert all(x[1] == y[0] for x, y in zip(covered, covered[1:], strict=False))


def test_paper_counts():
    """docs/datapath.md section 2: 3 groups x 2 PEs + 2 FC PEs = 8; C3 in 8 chunks, FC in 12."""
    m = map_network(SystemConfig(replication=3), MCNN)
    assert [len(g) for g in m.group_pes] == [2, 2, 2] and len(m.shared_pes) == 2
    assert m.layer("C3").n_chunks == 8 and m.layer("FC").n_chunks == 12
    assert sum(b.n_rows * b.n_in for b in m.blocks if b.group == 0 and b.layer != "FC"
               and b.copy == 0) == 2 * 936
    # Read-slot bounds: the busiest PE's reads x 8 bits.
    r1 = map_network(SystemConfig(replication=1), MCNN)
    assert r1.slot_bound("C1") == 676 // 2 * 8 and r1.slot_bound("FC") == 6 * 8
    assert (r1.slot_bound("C1") + r1.slot_bound("C3")) / (
        m.slot_bound("C1") + m.slot_bound("C3")) > 2.5


def test_unmappable_networks_are_refused():
    wide = Network("w", (1, 4, 4), (Conv("C", 1, 70, 3), Dense("D", 280, 2)))
    with pytest.raises(MappingError, match="70 outputs need 140 source lines"):
        map_network(SystemConfig(), wide)
    with pytest.raises(MappingError, match="replication=4 needs at least 4 PEs"):
        map_network(SystemConfig(replication=4, n_pe=5), MCNN)
    with pytest.raises(MappingError, match="does not fit"):
        map_network(SystemConfig(replication=4), MCNN)
    net = Network("p", (1, 3, 3), (Conv("C", 1, 2, 3), Pool("S", 1, 1), Dense("D", 2, 2)))
    with pytest.raises(MappingError, match="replication=2 exceeds its 1 output positions"):
        map_network(SystemConfig(replication=2), net)


def test_smaller_arrays_need_more_pes():
    cfg = SystemConfig(array_rows=64, n_pe=16)
    m = map_network(cfg, MCNN)
    assert len(m.group_pes[0]) == 4 and len(m.shared_pes) == 4


def test_a_patch_larger_than_the_bit_lines_is_cut_into_chunks():
    big_kernel = Network("k5", (2, 12, 12), (Conv("C", 2, 2, 5), Dense("D", 128, 2)))
    lm = map_network(SystemConfig(), big_kernel).layer("C")
    assert (lm.n_in, lm.chunk_size, lm.n_chunks) == (50, 16, 4)
    assert [lm.chunk_inputs(c) for c in range(4)] == [(0, 16), (16, 16), (32, 16), (48, 2)]


def test_named_replication_and_the_pes_a_network_needs():
    from cim_spec.mapping import pes_needed
    cfg = SystemConfig(replication=3)
    m = map_network(cfg, MCNN, replicate=["C1"])
    assert m.layer("C1").replicated and not m.layer("C3").replicated
    assert len(m.layer("C1").group_ranges) == 3 and m.layer("C3").group_ranges == ((0, 49),)
    # Every (position, chunk) of C3 is read from its one shared copy per chunk.
    assert {m.blocks[i].group for i in m.assign("C3").ravel()} == {0}
    assert {m.blocks[i].pe for i in m.assign("C3").ravel()} <= set(m.shared_pes)
    assert sorted({m.blocks[i].group for i in m.assign("C1").ravel()}) == [0, 1, 2]
    with pytest.raises(MappingError, match=r"\['FC'\] are not conv layers"):
        map_network(cfg, MCNN, replicate=["FC"])
    # The mCNN at replication 4: 2 PEs for FC and 2 per conv group.
    assert pes_needed(SystemConfig(replication=4), MCNN) == 10
    with pytest.raises(MappingError, match=r"'mcnn' needs 10 PEs of 128 x 16 at replication 4, "
                                           r"the configuration has 8"):
        map_network(SystemConfig(replication=4), MCNN)
    assert len(map_network(SystemConfig(replication=4, n_pe=10), MCNN).used_pes()) == 10


def _place_every_count(items, n_pes, rows):
    """The placement search without its shortcuts: the heaviest item in 1..n_pes copies, the
    rest each on the least loaded PE with room; the least largest load wins."""
    items = sorted(items, key=lambda it: (-it.load, -it.rows, it.layer, it.chunk))
    heavy, rest = items[0], items[1:]
    best = None
    for n_copies in range(1, n_pes + 1):
        load, used, placed = [0.0] * n_pes, [0] * n_pes, []
        if heavy.rows > rows:
            return None
        for c in range(n_copies):
            load[c] += heavy.load / n_copies
            used[c] += heavy.rows
            placed.append((heavy, c, c))
        for it in rest:
            fits = [p for p in range(n_pes) if used[p] + it.rows <= rows]
            if not fits:
                break
            p = min(fits, key=lambda p: (load[p], used[p], p))
            load[p] += it.load
            used[p] += it.rows
            placed.append((it, 0, p))
        else:
            if best is None or max(load) < best[0] - 1e-9:
                best = (max(load), placed)
    return best


def test_placement_shortcuts_change_nothing():
    """The placement search skips counts of copies that cannot fit or cannot win (what makes
    a ResNet-20 map in a second); on random items it places what the full search places,
    tight and loose, including the items' many ties."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        rows = 2 * int(rng.integers(2, 9))
        items = [_Item(f"L{int(rng.integers(3))}", c, 2 * int(rng.integers(1, rows // 2 + 1)),
                       float(rng.choice([1, 4, 9, 16, 49, 196, 784])) / int(rng.integers(1, 4)))
                 for c in range(int(rng.integers(1, 12)))]
        need = -(-sum(it.rows for it in items) // rows)
        for n_pes in range(need, need + 4):
            assert _place(items, n_pes, rows) == _place_every_count(items, n_pes, rows)

