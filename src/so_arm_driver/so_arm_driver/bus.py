"""Feetech bus layer over the real ``scservo_sdk`` (feetech-servo-sdk); plain Python, no rclpy.

Design rules:

- **Errors are values.** Every transaction returns a :class:`BusError` (motor id, register, SDK result code,
  message) instead of raising, so the control loop never dies on a serial timeout. Only
  :meth:`FeetechBus.open` raises (start-up path).
- **Never silently stale.** A failed group sync read reports an error for the servo that failed and for
  every servo after it (the SDK reads the status packets one by one and stops at the first failure, see
  ENVIRONMENT.md §9 quirk 4); only values that arrived in *this* transaction are returned. The input buffer
  is cleared before every transaction (the SDK only flushes output), so a late reply to an earlier request
  cannot be taken for the answer to the next one. A reply that arrives *after* that clear (later than the
  timeout of its own request: a loaded host, a slow adapter) is recognised by its parameter count: a status
  packet whose length is not the one this read asked for answers another request and is skipped (issue 19:
  the 37.8 s jump of the graph soak was a late reply to the configuration read-back taken for the next
  Present_Position read; its first two bytes, Return_Delay_Time 0 and Response_Status_Level 1, read as
  position 256, and the recovery held there). A late reply of the same length to the same servo cannot be
  told apart (the status packet carries no address).
- **Bounded retries.** Each call tries at most ``1 + retries`` times and stops retrying once
  ``retry_budget_s`` seconds have been spent.
- Byte order is handled here (little-endian, STS series), independent of the SDK's process-global "end"
  flag.
"""

from __future__ import annotations

import contextlib
import select
import termios
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import scservo_sdk as scs

from so_arm_driver import control_table as ct

# Result codes of our own (the SDK's COMM_* codes are 0 .. -9).
ERR_NOT_OPEN = -100
ERR_WRONG_MODEL = -101
ERR_NOT_READ = -102
ERR_ENCODING = -103
ERR_IO = -104
ERR_OUT_OF_RANGE = -105

_COMM_TEXT = {
    scs.COMM_SUCCESS: "success",
    scs.COMM_PORT_BUSY: "port busy",
    scs.COMM_TX_FAIL: "failed to transmit the instruction packet",
    scs.COMM_RX_FAIL: "failed to receive the status packet",
    scs.COMM_TX_ERROR: "incorrect instruction packet",
    scs.COMM_RX_WAITING: "still receiving the status packet",
    scs.COMM_RX_TIMEOUT: "no status packet (timeout: servo absent, unpowered or wrong baud rate)",
    scs.COMM_RX_CORRUPT: "corrupt or incomplete status packet",
    scs.COMM_NOT_AVAILABLE: "instruction not available",
    ERR_NOT_OPEN: "bus not open",
    ERR_WRONG_MODEL: "wrong model number",
    ERR_NOT_READ: "not read: the group transaction stopped at an earlier servo",
    ERR_ENCODING: "value cannot be encoded",
    ERR_IO: "serial I/O error (device unplugged?)",
    ERR_OUT_OF_RANGE: "position outside the calibrated range",
}

#: Status packet layout (the SDK's protocol_packet_handler constants).
_PKT_ID, _PKT_LENGTH, _PKT_ERROR, _PKT_PARAMETER0 = 2, 3, 4, 5

#: Status-packet error bits (servo hardware alarms).
HARDWARE_ERROR_BITS = {1: "voltage", 2: "angle sensor", 4: "overheat", 8: "overcurrent", 32: "overload"}


def describe_hardware_error(bits: int) -> str:
    names = [name for bit, name in HARDWARE_ERROR_BITS.items() if bits & bit]
    return ", ".join(names) if names else (f"0x{bits:02x}" if bits else "")


@dataclass(frozen=True)
class BusError:
    """A failed transaction: which servo, which register, what happened."""

    motor_id: int | None
    register: str | None
    code: int
    message: str = ""

    def __str__(self) -> str:
        who = f"motor id {self.motor_id}" if self.motor_id is not None else "bus"
        reg = f", register {self.register}" if self.register else ""
        text = self.message or _COMM_TEXT.get(self.code, f"result {self.code}")
        return f"{who}{reg}: {text}"


@dataclass
class SyncReadResult:
    """Values that arrived in this transaction, errors for the servos that did not answer."""

    values: dict[int, dict[str, int]] = field(default_factory=dict)
    errors: list[BusError] = field(default_factory=list)
    hardware_errors: dict[int, int] = field(default_factory=dict)
    attempts: int = 0
    t_start: float = 0.0  # time.monotonic() when the (last) request was sent
    t_end: float = 0.0  # time.monotonic() when the last status packet arrived

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def capture_time(self) -> float:
        """Best estimate of the sampling instant (middle of the transaction), time.monotonic() seconds."""
        return 0.5 * (self.t_start + self.t_end)


class _PortHandler(scs.PortHandler):
    """The SDK's PortHandler with a configurable adapter latency in its timeout formula.

    The SDK computes ``timeout = tx_byte_ms * n + 2 * LATENCY_TIMER + 2`` with LATENCY_TIMER = 16 ms.
    """

    def __init__(self, port_name: str, latency_timer_ms: float) -> None:
        super().__init__(port_name)
        self.latency_timer_ms = latency_timer_ms
        self.poll_wait_s = 0.0005

    def setPacketTimeout(self, packet_length: int) -> None:  # noqa: N802 (SDK name)
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * packet_length + 2.0 * self.latency_timer_ms + 2.0

    def readPort(self, length: int) -> bytes:  # noqa: N802 (SDK name)
        """Non-blocking read as in the SDK; when nothing is there, wait (up to ``poll_wait_s``) for data in
        select() instead of spinning: the SDK's receive loop then no longer burns a core and the GIL."""
        data = self.ser.read(length)
        if not data and self.poll_wait_s > 0:
            fd = getattr(self.ser, "fd", None)
            if fd is not None:
                select.select([fd], [], [], self.poll_wait_s)
        return data

    def clearPort(self) -> None:  # noqa: N802 (SDK name)
        """The SDK's flush before every packet: ``tcdrain`` on a vanished port raises ``termios.error``, which
        is not an OSError; convert it so that the bus reports an I/O error instead of the caller crashing."""
        try:
            super().clearPort()
        except termios.error as exc:
            raise OSError(f"cannot flush output of {self.port_name}: {exc}") from exc

    def discard_input(self) -> None:
        if self.ser is not None:
            try:
                self.ser.reset_input_buffer()
            except termios.error as exc:  # not an OSError: convert, so callers see one error type
                raise OSError(f"cannot flush input of {self.port_name}: {exc}") from exc


#: what a serial transaction raises when the adapter or pty goes away (termios.error is not an OSError)
IO_ERRORS: tuple[type[BaseException], ...] = (OSError, termios.error)


class BusOpenError(OSError):
    """The serial port cannot be opened (raised by :meth:`FeetechBus.open` only)."""


class FeetechBus:
    """Feetech STS bus over one serial port (thread-safe: one transaction at a time)."""

    def __init__(
        self,
        port: str,
        baudrate: int = 1_000_000,
        retries: int = 2,
        retry_budget_s: float = 0.2,
        latency_timer_ms: float = 16.0,
    ) -> None:
        self.port_name = port
        self.baudrate = baudrate
        self.retries = max(0, int(retries))
        self.retry_budget_s = retry_budget_s
        self.latency_timer_ms = latency_timer_ms
        self._port: _PortHandler | None = None
        self._ph: object | None = None
        self._lock = threading.RLock()
        self._groups: dict[tuple[int, int, tuple[int, ...]], scs.GroupSyncRead] = {}
        self.transactions = 0
        self.failed_transactions = 0
        self.stale_packets = 0  # status packets skipped: replies to another request (late) or another servo
        self.last_io_error = ""

    # -- connection --------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        """Open the port (raises :class:`BusOpenError` with the port name on failure)."""
        with self._lock:
            if self.is_open:
                return
            port = _PortHandler(self.port_name, self.latency_timer_ms)
            try:
                ok = port.setBaudRate(self.baudrate)
            except Exception as exc:  # serial.SerialException, OSError
                raise BusOpenError(f"cannot open serial port '{self.port_name}': {exc}") from exc
            if not ok:
                raise BusOpenError(f"baud rate {self.baudrate} not supported by scservo_sdk")
            self._port = port
            self._ph = scs.PacketHandler(0)  # STS/SMS: little-endian
            self._groups.clear()

    def close(self) -> None:
        with self._lock:
            if self._port is not None and self._port.is_open:
                with contextlib.suppress(Exception):  # closing a vanished device must not raise
                    self._port.closePort()
            self._port = None

    def __enter__(self) -> FeetechBus:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------------
    def _begin(self) -> None:
        scs.SCS_SETEND(0)  # another PacketHandler(1) in this process would flip the global byte order
        assert self._port is not None
        self._port.is_using = False
        self._port.discard_input()

    def _retrying(self, attempt_fn):  # type: ignore[no-untyped-def]
        """Run ``attempt_fn() -> (value, error)`` with the retry count and time budget."""
        if not self.is_open:
            return None, ERR_NOT_OPEN, 0
        start = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            self.transactions += 1
            try:
                value, code = attempt_fn()
            except IO_ERRORS as exc:  # SerialException / termios.error: unplugged adapter, vanished pty
                self.last_io_error = str(exc)
                value, code = None, ERR_IO
            if code == scs.COMM_SUCCESS:
                return value, code, attempts
            self.failed_transactions += 1
            if attempts > self.retries or time.monotonic() - start > self.retry_budget_s:
                return value, code, attempts

    def _receive(self, motor_id: int, length: int) -> tuple[list[int], int, int]:
        """The status packet of ``motor_id`` with ``length`` parameter bytes: (data, result, hardware error).

        Like the SDK's ``readRx``, which skips packets of other servos, but it also skips a packet of this
        servo with another parameter count (the SDK truncates it to ``length`` and returns it): that is a
        late reply to an earlier request, e.g. the configuration read-back (starting at Return_Delay_Time)
        taken for Present_Position. Stops at the request's timeout like the SDK."""
        while True:
            packet, result = self._ph.rxPacket(self._port)  # type: ignore[union-attr]
            if result != scs.COMM_SUCCESS:
                return [], result, 0
            if packet[_PKT_ID] == motor_id and packet[_PKT_LENGTH] == length + 2:
                return list(packet[_PKT_PARAMETER0 : _PKT_PARAMETER0 + length]), result, packet[_PKT_ERROR]
            self.stale_packets += 1

    # -- single-servo transactions -----------------------------------------------------------------
    def ping(self, motor_id: int) -> tuple[int | None, BusError | None]:
        """Ping a servo and read its model number. Returns (model_number, None) or (None, error)."""
        with self._lock:

            def attempt() -> tuple[int | None, int]:
                self._begin()
                packet = [0, 0, motor_id, 2, scs.INST_PING, 0]
                _, result, _ = self._ph.txRxPacket(self._port, packet)  # type: ignore[union-attr]
                if result != scs.COMM_SUCCESS:
                    return None, result
                self._begin()
                data, result, _ = self._ph.readTxRx(self._port, motor_id, 3, 2)  # type: ignore[union-attr]
                if result != scs.COMM_SUCCESS or len(data) < 2:
                    return None, result if result != scs.COMM_SUCCESS else scs.COMM_RX_CORRUPT
                return ct.bytes_to_int(data[:2]), result

            model, code, _ = self._retrying(attempt)
            if code != scs.COMM_SUCCESS:
                return None, BusError(motor_id, "Model_Number", code)
            return model, None

    def scan(self, ids: Iterable[int]) -> dict[int, int]:
        """Ping each id (at most one retry); returns {id: model_number} of the servos that answered."""
        found: dict[int, int] = {}
        with self._lock:
            saved, self.retries = self.retries, min(self.retries, 1)
            try:
                for motor_id in ids:
                    model, err = self.ping(motor_id)
                    if err is None and model is not None:
                        found[motor_id] = model
            finally:
                self.retries = saved
        return found

    def read(self, motor_id: int, name: str) -> tuple[int | None, BusError | None]:
        """Read one register (decoded). Returns (value, None) or (None, error)."""
        reg = ct.register(name)
        with self._lock:

            def attempt() -> tuple[int | None, int]:
                self._begin()
                result = self._ph.readTx(self._port, motor_id, reg.address, reg.size)  # type: ignore[union-attr]
                data: list[int] = []
                if result == scs.COMM_SUCCESS:
                    data, result, _ = self._receive(motor_id, reg.size)
                if result == scs.COMM_SUCCESS and len(data) < reg.size:
                    result = scs.COMM_RX_CORRUPT
                return (reg.from_bytes(data[: reg.size]) if result == scs.COMM_SUCCESS else None), result

            value, code, _ = self._retrying(attempt)
            return (value, None) if code == scs.COMM_SUCCESS else (None, BusError(motor_id, name, code))

    def write(self, motor_id: int, name: str, value: int) -> BusError | None:
        """Write one register and wait for the status packet."""
        reg = ct.register(name)
        try:
            data = reg.to_bytes(value)
        except ValueError as exc:
            return BusError(motor_id, name, ERR_ENCODING, str(exc))
        with self._lock:

            def attempt() -> tuple[None, int]:
                self._begin()
                result, _ = self._ph.writeTxRx(self._port, motor_id, reg.address, reg.size, data)  # type: ignore[union-attr]
                return None, result

            _, code, _ = self._retrying(attempt)
            return None if code == scs.COMM_SUCCESS else BusError(motor_id, name, code)

    # -- group transactions ------------------------------------------------------------------------
    def sync_read(self, names: Sequence[str], ids: Sequence[int]) -> SyncReadResult:
        """One SYNC_READ of the block covering ``names`` for ``ids`` (retried as a whole)."""
        regs = [ct.register(n) for n in names]
        start, length = ct.span(*names)
        ids = tuple(ids)
        out = SyncReadResult()
        if not self.is_open:
            out.errors = [BusError(i, names[0], ERR_NOT_OPEN) for i in ids]
            return out
        with self._lock:
            key = (start, length, ids)
            group = self._groups.get(key)
            if group is None:
                group = scs.GroupSyncRead(self._port, self._ph, start, length)
                for motor_id in ids:
                    group.addParam(motor_id)
                self._groups[key] = group
            t0 = time.monotonic()
            attempts = 0
            while True:
                attempts += 1
                self.transactions += 1
                values: dict[int, dict[str, int]] = {}
                hw: dict[int, int] = {}
                errors: list[BusError] = []
                out.t_start = time.monotonic()
                try:
                    self._begin()
                    result = group.txPacket()
                except IO_ERRORS as exc:
                    self.last_io_error = str(exc)
                    result = ERR_IO
                if result != scs.COMM_SUCCESS:
                    errors = [BusError(i, names[0], result) for i in ids]
                else:
                    for k, motor_id in enumerate(ids):
                        try:
                            data, result, hw_err = self._receive(motor_id, length)
                        except IO_ERRORS as exc:
                            self.last_io_error = str(exc)
                            data, result, hw_err = [], ERR_IO, 0
                        if result == scs.COMM_SUCCESS and len(data) < length:
                            result = scs.COMM_RX_CORRUPT
                        if result != scs.COMM_SUCCESS:
                            errors.append(BusError(motor_id, names[0], result))
                            errors += [BusError(j, names[0], ERR_NOT_READ) for j in ids[k + 1 :]]
                            break
                        values[motor_id] = {
                            r.name: r.from_bytes(data[r.address - start : r.address - start + r.size])
                            for r in regs
                        }
                        if hw_err:
                            hw[motor_id] = hw_err
                self._port.is_using = False  # type: ignore[union-attr]
                out.t_end = time.monotonic()
                if not errors:
                    break
                self.failed_transactions += 1
                if attempts > self.retries or time.monotonic() - t0 > self.retry_budget_s:
                    break
            out.values, out.errors, out.hardware_errors, out.attempts = values, errors, hw, attempts
            return out

    def sync_write(self, name: str, values: Mapping[int, int]) -> BusError | None:
        """One SYNC_WRITE of ``name`` (no status packet exists for it: only transmit errors are seen)."""
        reg = ct.register(name)
        if not values:
            return None
        try:
            payload = {motor_id: reg.to_bytes(v) for motor_id, v in values.items()}
        except ValueError as exc:
            return BusError(None, name, ERR_ENCODING, str(exc))
        with self._lock:
            if not self.is_open:
                return BusError(None, name, ERR_NOT_OPEN)
            group = scs.GroupSyncWrite(self._port, self._ph, reg.address, reg.size)
            for motor_id, data in payload.items():
                group.addParam(motor_id, data)
            self.transactions += 1
            try:
                self._begin()
                result = group.txPacket()
            except IO_ERRORS as exc:
                self.last_io_error = str(exc)
                result = ERR_IO
            self._port.is_using = False  # type: ignore[union-attr]
            if result != scs.COMM_SUCCESS:
                self.failed_transactions += 1
                return BusError(None, name, result)
            return None

    def write_all(self, name: str, values: Mapping[int, int]) -> list[BusError]:
        """Acknowledged write of one register to several servos; returns the errors."""
        return [e for motor_id, v in values.items() if (e := self.write(motor_id, name, v)) is not None]
