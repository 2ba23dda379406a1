"""The whole chip on the ULX3S, reached over the FTDI serial port (docs/board.md).

    ftdi_txd ──> UartRx ──> FrameRx ──┬─ IMAGE: pixels into the image buffer; when the frame's
                                      │  CRC holds, the buffer streams into the chip's pixels
                                      │  (IMAGE_FEATURES: the same, answered with the features)
                                      ├─ PROG: one cell through the chip's programming port
                                      ├─ GAIN: one weight layer's ADC gain through its gain port
                                      └─ STATUS
    ftdi_rxd <── UartTx <── FrameTx <── RESULT (id, label, logits, cycles) / RESULT_FEATURES
                                        (the same and the last weight layer's input map) /
                                        PROG_ACK / GAIN_ACK / STATUS / NAK

`ChipHost` is the protocol around a `CimChip`; `Ulx3sChipTop` adds the pins, the power-on
reset and the PLL (an ECP5 EHXPLLL from the board's 25 MHz to the chip clock; bypassed for
simulation). cim_spec.link defines the frames.

A frame is used only once its CRC holds: the image is buffered whole before it reaches the
chip (two banks in one block RAM: one fills while the other streams into the chip), a
programming or gain write waits for its CRC (and a gain outside the register's range is
refused), and anything rejected is answered with a NAK and leaves the chip untouched. An
image that would overwrite a bank still streaming is rejected (OVERRUN), which a host that
keeps at most two images outstanding never sees.

A chip built with `features=True` streams every image's last-weight-layer input map; `ChipHost`
keeps the latest map in a register until that image's result frame is out (the chip waits for
it meanwhile), and sends it only for images that came in an IMAGE_FEATURES frame.
"""

from __future__ import annotations

import struct

from amaranth import Array, Cat, ClockDomain, Const, Instance, Module, Mux, Signal, Value
from amaranth.lib import fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from cim_spec import link

from .board_clock import pll_params, uart_divisor
from .chip import CimChip, feature_buffer
from .link import FrameRx, FrameTx
from .uart import UartRx, UartTx

# Reply payloads, in send order: which one FrameTx carries.
SEL_NAK, SEL_ACK, SEL_STATUS, SEL_RESULT, SEL_GAIN_ACK = range(5)


class ChipHost(wiring.Component):
    """The link protocol around a chip: serial line in and out."""

    def __init__(self, chip: CimChip, divisor: int, timeout: int | None = None):
        plan = chip.plan
        self.chip = chip
        self.n_pixels = plan.buffers["img"].depth
        if plan.buffers["img"].channels > 1:     # an IMAGE frame is one plane (cim_spec.link)
            raise ValueError(f"the link carries single-channel images; the network has "
                             f"{plan.buffers['img'].channels} input channels")
        if plan.buffers["img"].bits > 8:
            raise ValueError(f"the link carries one byte per pixel; the chip's pixels have "
                             f"{plan.buffers['img'].bits} bits")
        self.n_logits = plan.layers[-1].n_out
        self.n_layers = len(plan.layers)
        if plan.acc_bits > 32:
            raise ValueError(f"logits of {plan.acc_bits} bits do not fit the link's 32")
        self.gain_top = 2 ** plan.pes[0].params.gain_bits - 1
        self.features = chip.features_on
        if self.features:
            fb = feature_buffer(plan)
            self.feature_shape = (fb.channels, fb.depth, fb.bits)
            self.feature_bytes = link.features_length(*self.feature_shape)
            if link.result_length(self.n_logits, self.n_layers) + self.feature_bytes > \
                    link.MAX_PAYLOAD:
                raise ValueError(f"a feature map of {self.feature_bytes} bytes does not fit "
                                 f"a frame")
        self.divisor = divisor
        # A frame silent for 64 byte times is abandoned.
        self.timeout = timeout if timeout is not None else 640 * divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1), "busy": Out(1),
                          "rejected": Out(16), "accepted": Out(16)})

    def elaborate(self, platform):
        m = Module()
        chip = self.chip
        m.submodules.chip = chip
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        commands = {link.Cmd.IMAGE: 4 + self.n_pixels,
                    link.Cmd.PROG: struct.calcsize(link.PROG_FORMAT), link.Cmd.STATUS: 0,
                    link.Cmd.GAIN: struct.calcsize(link.GAIN_FORMAT)}
        if self.features:
            commands[link.Cmd.IMAGE_FEATURES] = 4 + self.n_pixels
        m.submodules.frx = frx = FrameRx(commands, self.timeout)
        m.submodules.ftx = ftx = FrameTx()
        m.d.comb += [urx.rx.eq(self.rx), frx.data.eq(urx.data), frx.valid.eq(urx.valid),
                     utx.data.eq(ftx.data), utx.valid.eq(ftx.valid), ftx.ready.eq(utx.ready),
                     self.tx.eq(utx.tx), self.busy.eq(chip.busy)]

        # ---- IMAGE: the payload into one bank of the buffer while the other streams into
        # the chip (two banks of n_pixels bytes: one DP16KD for the 784 pixels of MNIST).
        n = self.n_pixels
        m.submodules.image = image = memory.Memory(shape=8, depth=2 * n, init=[])
        wr = image.write_port()
        rd = image.read_port()
        rx_id = Signal(32)
        wbank = Signal()                  # the bank the next image frame fills
        sbank = Signal()                  # the bank streaming into the chip
        streaming = Signal()
        queued = Signal()                 # the other bank holds a checked image too
        qid = Signal(32)                  # ... with this id
        overrun = Signal()
        is_image = Signal()
        image_kinds = [link.Cmd.IMAGE] + ([link.Cmd.IMAGE_FEATURES] if self.features else [])
        m.d.comb += is_image.eq(frx.kind.matches(*image_kinds))
        clash = streaming & (sbank == wbank)
        with m.If(frx.byte_valid & is_image):
            with m.If(frx.index < 4):
                with m.Switch(frx.index[:2]):
                    for k in range(4):
                        with m.Case(k):
                            m.d.sync += rx_id[8 * k:8 * k + 8].eq(frx.byte)
            with m.Elif(clash):
                m.d.sync += overrun.eq(1)
        m.d.comb += [wr.addr.eq(Mux(wbank, n, 0) + frx.index - 4), wr.data.eq(frx.byte),
                     wr.en.eq(frx.byte_valid & is_image & (frx.index >= 4) & ~clash)]

        # The ids of the images in the chip, in order (the chip keeps at most two, one
        # computing and one loaded, and the buffer two more).
        # Bit 32: the image came as IMAGE_FEATURES.
        m.submodules.ids = ids = fifo.SyncFIFO(width=33, depth=4)
        addr = Signal(range(n + 1))                   # the pixel read next
        held = Signal()                               # rd.data holds pixel addr - 1
        id_out = Signal(32)
        m.d.comb += [rd.addr.eq(Mux(sbank, n, 0) + addr), chip.pixels.payload.eq(rd.data),
                     chip.pixels.valid.eq(streaming & held), chip.image_id.eq(id_out)]
        m.d.comb += rd.en.eq(~held | chip.pixels.ready)
        finishing = Signal()              # the last pixel is taken this cycle
        m.d.comb += finishing.eq(streaming & chip.pixels.ready & held & (addr == n))
        with m.If(streaming):
            with m.If(rd.en & (addr < n)):
                m.d.sync += [addr.eq(addr + 1), held.eq(1)]
            with m.Elif(chip.pixels.ready):
                m.d.sync += held.eq(0)
            with m.If(finishing):
                # The queued image streams next, from the other bank.
                m.d.sync += [streaming.eq(queued), held.eq(0), addr.eq(0), queued.eq(0),
                             sbank.eq(~sbank), id_out.eq(qid)]

        # ---- PROG: the cell is staged as it arrives and applied once its CRC holds.
        staged = Signal(8 * commands[link.Cmd.PROG])
        cell = Signal.like(staged)
        prog_pending = Signal()
        is_prog = frx.kind == link.Cmd.PROG
        with m.If(frx.byte_valid & is_prog):
            with m.Switch(frx.index[:3]):
                for k in range(len(staged) // 8):
                    with m.Case(k):
                        m.d.sync += staged[8 * k:8 * k + 8].eq(frx.byte)
        pe, row, col, code = cell[0:8], cell[8:24], cell[24:32], cell[32:40]
        m.d.comb += [chip.prog.payload.pe.eq(pe), chip.prog.payload.row.eq(row),
                     chip.prog.payload.col.eq(col), chip.prog.payload.code.eq(code),
                     chip.prog.valid.eq(prog_pending)]

        # ---- GAIN: staged like a cell; refused (RANGE) for a layer the chip does not have
        # or a gain its register cannot hold (0 would silence the layer's ADCs; the gain
        # port takes the low bits and would turn a large gain into a wrong small one).
        gstaged = Signal(8 * commands[link.Cmd.GAIN])
        gcell = Signal.like(gstaged)
        gain_pending, gain_ack_pending = Signal(), Signal()
        is_gain = frx.kind == link.Cmd.GAIN
        with m.If(frx.byte_valid & is_gain):
            with m.Switch(frx.index[:3]):
                for k in range(len(gstaged) // 8):
                    with m.Case(k):
                        m.d.sync += gstaged[8 * k:8 * k + 8].eq(frx.byte)
        gain_bad = Signal()
        m.d.comb += gain_bad.eq((gstaged[:8] >= self.n_layers) | (gstaged[8:] == 0)
                                | (gstaged[8:] > self.gain_top))
        m.d.comb += [chip.gain.payload.layer.eq(gcell[:8]), chip.gain.payload.gain.eq(gcell[8:]),
                     chip.gain.valid.eq(gain_pending)]

        # ---- Frame verdicts. A well-formed frame that cannot be taken now is refused
        # (OVERRUN): an image while both banks are taken (one streaming, one waiting) or four
        # are queued, a cell or a status request while the last one's reply is pending.
        nak_pending, ack_pending, status_pending = Signal(), Signal(), Signal()
        nak = Signal(16)                 # reason, rejected type
        accepted, rejected = self.accepted, self.rejected
        refused = Signal()
        m.d.comb += refused.eq(
            (is_image & (overrun | queued | ~ids.w_rdy))
            | (is_prog & (prog_pending | ack_pending))
            | ((frx.kind == link.Cmd.STATUS) & status_pending)
            | (is_gain & (gain_pending | gain_ack_pending | gain_bad)))
        take = Signal()
        m.d.comb += take.eq(frx.done & frx.ok & ~refused)
        with m.If(take):
            m.d.sync += accepted.eq(accepted + 1)
            with m.Switch(frx.kind):
                with m.Case(*image_kinds):
                    m.d.sync += wbank.eq(~wbank)
                    with m.If(streaming & ~finishing):
                        m.d.sync += [queued.eq(1), qid.eq(rx_id)]
                    with m.Else():      # (overrides the finish above: nothing was queued)
                        m.d.sync += [streaming.eq(1), addr.eq(0), held.eq(0),
                                     sbank.eq(wbank), id_out.eq(rx_id)]
                with m.Case(link.Cmd.PROG):
                    m.d.sync += [prog_pending.eq(1), cell.eq(staged)]
                with m.Case(link.Cmd.STATUS):
                    m.d.sync += status_pending.eq(1)
                with m.Case(link.Cmd.GAIN):
                    m.d.sync += [gain_pending.eq(1), gcell.eq(gstaged)]
        with m.Elif(frx.done):
            m.d.sync += rejected.eq(rejected + 1)
            # A second rejection before the first NAK left is counted, not answered.
            with m.If(~nak_pending):
                why = Mux(is_gain & gain_bad, int(link.Nak.RANGE), int(link.Nak.OVERRUN))
                m.d.sync += [nak.eq(Cat(Mux(frx.ok, why, frx.reason)[:8], frx.kind)),
                             nak_pending.eq(1)]
        with m.If(frx.done):
            m.d.sync += overrun.eq(0)
        # The chip samples image_id (id_out) with the first pixel; the queue gives each
        # result its id.
        m.d.comb += [ids.w_data.eq(Cat(rx_id, frx.kind == link.Cmd.IMAGE_FEATURES)),
                     ids.w_en.eq(take & is_image)]
        with m.If(chip.prog.valid & chip.prog.ready):
            m.d.sync += [prog_pending.eq(0), ack_pending.eq(1)]
        with m.If(chip.gain.valid & chip.gain.ready):
            m.d.sync += [gain_pending.eq(0), gain_ack_pending.eq(1)]

        # ---- RESULT: latch the logits, then wait until the chip's counters include the
        # image (images_done and cycles_image move when its last layer ends).
        result = Signal(chip.result.payload.shape())
        res_id = Signal(32)
        res_feat = Signal()              # answer with RESULT_FEATURES
        results = Signal(32)             # results taken from the chip
        res_state = Signal(2)            # 0 empty, 1 waiting for counters, 2 ready, 3 sending
        cycles = Signal(32 * (1 + self.n_layers))
        m.d.comb += chip.result.ready.eq(res_state == 0)
        # The label is found again from the latched logits, one comparison per cycle: the
        # chip's combinational argmax behind its merger's adders was the placed board's
        # critical path (56.7 ns); this is the same function (the first of equal maxima,
        # strictly greater wins) in n - 1 cycles, and leaves that path unused.
        label = Signal(range(max(self.n_logits, 2)))
        best = Signal.like(result.logits[0])
        scan = Signal(range(self.n_logits + 1), init=self.n_logits)
        logit = Array([result.logits[i] for i in range(self.n_logits)])[scan]
        with m.If(chip.result.valid & chip.result.ready):
            m.d.sync += [result.eq(chip.result.payload), results.eq(results + 1),
                         res_id.eq(ids.r_data[:32]), res_feat.eq(ids.r_data[32]),
                         res_state.eq(1), label.eq(0),
                         best.eq(chip.result.payload.logits[0]), scan.eq(1)]
            m.d.comb += ids.r_en.eq(1)
        with m.Elif(scan < self.n_logits):
            m.d.sync += scan.eq(scan + 1)
            with m.If(logit > best):
                m.d.sync += [best.eq(logit), label.eq(scan)]
        with m.If((res_state == 1) & (chip.images_done == results) &
                  (scan == self.n_logits)):
            m.d.sync += [cycles.eq(Cat(chip.cycles_image, chip.cycles_layer.as_value())),
                         res_state.eq(2)]

        # ---- FEATURES: the chip's last weight layer input map, word by word into a shift
        # register (word 0 ends at the bottom). It holds one image's map until that image's
        # result frame is out; the chip waits for it meanwhile (its feature reader stalls the
        # last layer), so every result finds its own map here.
        feats = Const(0, 0)
        if self.features:
            channels, depth, bits = self.feature_shape
            wb = channels * bits
            feats = Signal(depth * wb)
            fcount = Signal(range(depth + 1))
            m.d.comb += chip.features.ready.eq(fcount != depth)
            with m.If(chip.features.valid & chip.features.ready):
                m.d.sync += [feats.eq(Cat(feats[wb:], chip.features.payload)),
                             fcount.eq(fcount + 1)]
            with m.If((res_state == 3) & ~ftx.busy & (fcount == depth)):
                m.d.sync += fcount.eq(0)

        # ---- The transmitter: one reply at a time, NAKs first.
        sel = Signal(3)
        result_len = link.result_length(self.n_logits, self.n_layers)
        length = {SEL_NAK: 2, SEL_ACK: len(cell) // 8,
                  SEL_STATUS: struct.calcsize(link.STATUS_FORMAT),
                  SEL_RESULT: result_len + (self.feature_bytes if self.features else 0),
                  SEL_GAIN_ACK: len(gcell) // 8}
        kinds = {SEL_NAK: link.Reply.NAK, SEL_ACK: link.Reply.PROG_ACK,
                 SEL_STATUS: link.Reply.STATUS, SEL_RESULT: link.Reply.RESULT,
                 SEL_GAIN_ACK: link.Reply.GAIN_ACK}
        logits = Cat(*[_sext(Value.cast(result.logits[i]), 32) for i in range(self.n_logits)])
        payloads = {
            SEL_NAK: nak,
            SEL_ACK: cell,
            SEL_STATUS: Cat(chip.images_done, accepted, rejected, chip.busy, Const(0, 7)),
            # A RESULT frame is the first result_len bytes of a RESULT_FEATURES frame.
            SEL_RESULT: Cat(res_id, _zext(label, 8), logits, cycles, feats),
            SEL_GAIN_ACK: gcell,
        }
        byte = Signal(8)
        with m.Switch(sel):
            for s, value in payloads.items():
                with m.Case(s):
                    m.d.comb += byte.eq(value.word_select(ftx.index[:_bits(length[s])], 8))
        m.d.comb += ftx.byte.eq(byte)

        def reply(s, pending):
            m.d.comb += [ftx.start.eq(1), ftx.kind.eq(kinds[s]), ftx.length.eq(length[s])]
            m.d.sync += [sel.eq(s), pending.eq(0)]

        ready_result = Signal()
        m.d.comb += ready_result.eq(res_state == 2)
        with m.If(~ftx.busy):
            with m.If(nak_pending):
                reply(SEL_NAK, nak_pending)
            with m.Elif(ack_pending):
                reply(SEL_ACK, ack_pending)
            with m.Elif(gain_ack_pending):
                reply(SEL_GAIN_ACK, gain_ack_pending)
            with m.Elif(status_pending):
                reply(SEL_STATUS, status_pending)
            with m.Elif(ready_result):
                m.d.comb += [ftx.start.eq(1),
                             ftx.kind.eq(Mux(res_feat, int(link.Reply.RESULT_FEATURES),
                                             int(link.Reply.RESULT))),
                             ftx.length.eq(Mux(res_feat, length[SEL_RESULT], result_len))]
                m.d.sync += [sel.eq(SEL_RESULT), res_state.eq(3)]
        # The result register is free once its frame is out.
        with m.If((res_state == 3) & ~ftx.busy):
            m.d.sync += res_state.eq(0)
        return m


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _zext(value, width: int):
    return Cat(value, Signal(width - len(value))) if len(value) < width else value[:width]


def _sext(value, width: int):
    """A signed field's bits, sign-extended to `width`."""
    return Cat(value, value[-1].replicate(width - len(value))) if len(value) < width else \
        value[:width]


def board_clock(clock_mhz: float, baud: int, pll: bool = True, divisor: int | None = None
                ) -> tuple[dict | None, float, int]:
    """The board's clock from the 25 MHz oscillator (the PLL's setting or None, the clock in
    MHz) and the UART divisor for `baud`; ValueError if the PLL or the UART cannot make
    them. Callers check it before they build the chip the top would hold."""
    setting = pll_params(25.0, clock_mhz) if pll else None
    mhz = setting["mhz"] if pll else clock_mhz
    return setting, mhz, divisor if divisor is not None else uart_divisor(mhz * 1e6, baud)


class Ulx3sChipTop(wiring.Component):
    """ULX3S pins: the 25 MHz oscillator, the FTDI serial lines, LEDs and buttons.

    The chip clock comes from an EHXPLLL (`clock_mhz`); with `pll=False` (simulation) the
    oscillator pin is the chip clock itself, and `divisor` is the UART's cycles per bit.
    led[0] chip busy, led[1] a frame was rejected, led[2] PLL locked, led[7:3] the low bits of
    the accepted frames; FIRE1 (btn[1]) resets everything but the cell contents.
    """

    def __init__(self, chip: CimChip, clock_mhz: float = 50.0, baud: int = 2_000_000,
                 pll: bool = True, divisor: int | None = None):
        self.pll = pll
        self.pll_setting, self.clock_mhz, self.divisor = board_clock(clock_mhz, baud, pll,
                                                                     divisor)
        self.baud = self.clock_mhz * 1e6 / self.divisor
        self.host = ChipHost(chip, self.divisor)
        super().__init__({"clk_25mhz": In(1), "btn": In(7), "led": Out(8),
                          "ftdi_txd": In(1, init=1), "ftdi_rxd": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.domains.por = por = ClockDomain("por", reset_less=True)
        clk = Signal()
        locked = Signal()
        if self.pll:
            s = self.pll_setting
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=f"{s['mhz']:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=s["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=s["CLKOP_DIV"],
                p_CLKOP_CPHASE=s["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_CLKFB_DIV=s["CLKFB_DIV"],
                i_RST=0, i_STDBY=0, i_CLKI=self.clk_25mhz, o_CLKOP=clk, i_CLKFB=clk,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        else:
            m.d.comb += [clk.eq(self.clk_25mhz), locked.eq(1)]
        # Reset until the PLL has locked and for 255 cycles after, or while FIRE1 is held.
        # The reset leaves a register (no logic between it and the flip-flops' LSR pins),
        # and on the board through a DCCA onto a global network: on general routing its
        # fan-out to every flip-flop of the chip was the placed board's critical path
        # (1.7 ns of logic, 18.5 ns of routing).
        count = Signal(8)
        press = Signal(2)
        rst = Signal(init=1)
        m.d.comb += [sync.clk.eq(clk), por.clk.eq(clk)]
        with m.If(~locked):
            m.d.por += count.eq(0)
        with m.Elif(count != 255):
            m.d.por += count.eq(count + 1)
        m.d.por += [press.eq(Cat(self.btn[1], press[0])), rst.eq((count != 255) | press[1])]
        if self.pll:
            rst_global = Signal()
            m.submodules.rst_buffer = Instance("DCCA", i_CLKI=rst, i_CE=Const(1),
                                               o_CLKO=rst_global)
            m.d.comb += sync.rst.eq(rst_global)
        else:
            m.d.comb += sync.rst.eq(rst)

        m.submodules.host = host = self.host
        m.d.comb += [host.rx.eq(self.ftdi_txd), self.ftdi_rxd.eq(host.tx),
                     self.led.eq(Cat(host.busy, host.rejected != 0, locked,
                                     host.accepted[:5]))]
        return m
