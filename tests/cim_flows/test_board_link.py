"""The chip board's host link end to end: the host code (cim_flows.board_link) through a
pseudo-terminal to the board top on Verilator (testbench.board_sim), the real protocol and
the gateware's UART, every logit compared with the golden model."""

from __future__ import annotations

import numpy as np

from cim_cli.main import main
from cim_flows import board_link, stages
from cim_spec import link, program
from cim_spec.config import SystemConfig
from golden import chip_model, data
from testbench import board_sim


def noisy_chip(seed: int = 7) -> program.Chip:
    """Replication 3, every cell off by a seeded error, read noise on (keyed by image id)."""
    cfg = SystemConfig(replication=3)
    mapping, prog = stages.ideal_program(cfg, stages.load_model())
    rng = np.random.default_rng(seed)
    g = np.clip(prog.target + rng.integers(-4, 5, size=prog.target.shape), 0, cfg.code_max)
    d = prog.digital
    return program.Chip(mapping, g, program.Digital(
        d.adc_gain, d.requant_mult, d.requant_shift, read_noise=119, noise_seed=seed))


def test_images_bad_frames_and_cell_writes_over_the_simulated_board():
    chip = noisy_chip()
    bundle = data.load_bundled()
    images, labels = bundle.test_images[:5], bundle.test_labels[:5]
    with board_sim.simulated_board(chip) as path:
        port = board_link.Port(path)
        s = board_link.Session(port)
        try:
            assert s.status(60).images_done == 0
            run = board_link.run_images(s, chip, images[:3], labels[:3], [40, 41, 42],
                                        timeout=120)
            assert (run.images, run.bitexact, run.lost) == (3, 3, 0), run.mismatches
            assert run.label_agreement == 3
            assert min(run.cycles_image) > 0

            # Frames the board must refuse, each with its reason; nothing reaches the chip.
            bad = bytearray(link.image_frame(43, images[3].ravel()))
            bad[100] ^= 0x10
            s.send(bytes(bad))
            assert s.wait_for(link.Reply.NAK, 60) == bytes([link.Nak.CRC, link.Cmd.IMAGE])
            s.send(link.encode(0x55, b"xy"))
            assert s.wait_for(link.Reply.NAK, 60) == bytes([link.Nak.TYPE, 0x55])
            s.send(link.encode(link.Cmd.PROG, b"\x01"))
            assert s.wait_for(link.Reply.NAK, 60) == bytes([link.Nak.LENGTH, link.Cmd.PROG])

            # Cells written through the programming port: the answers follow the new codes.
            new = chip.conductance.copy()
            block = next(b for b in chip.mapping.blocks if b.layer == "C1")
            cells = [(block.pe, block.row0 + r, c, (int(new[block.pe, block.row0 + r, c]) + 7)
                      % (chip.config.code_max + 1)) for r in range(2) for c in range(3)]
            for pe, row, col, code in cells:
                new[pe, row, col] = code
            changed = program.Chip(chip.mapping, new, chip.digital)
            assert s.program(cells, 60) == len(cells)
            ids = [43, 44]
            old = chip_model.run(chip, images[3:5], image_ids=np.array(ids)).logits
            want = chip_model.run(changed, images[3:5], image_ids=np.array(ids)).logits
            assert not np.array_equal(old, want)      # the writes matter to these images
            run2 = board_link.run_images(s, changed, images[3:5], labels[3:5], ids,
                                         timeout=120)
            assert (run2.images, run2.bitexact, run2.label_agreement) == (2, 2, 2), \
                run2.mismatches

            st = s.status(60)
            assert (st.images_done, st.rejected, st.busy) == (5, 3, False)
            assert st.accepted == 1 + 3 + len(cells) + 2 + 1      # statuses, images, cells
        finally:
            port.close()


def test_board_run_needs_a_port_or_the_simulation(capsys):
    assert main(["board", "run"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["board", "run", "--sim", "--port", "/dev/null"]) == 2
