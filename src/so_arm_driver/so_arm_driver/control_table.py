"""Feetech STS3215 (STS/SMS series) control table and its encodings (no I/O, no rclpy).

Addresses and sizes follow the servo's memory map (see ``LEROBOT_FORMATS.md`` §2.3). Multi-byte values are
little-endian (protocol "end" 0). Some registers are sign-magnitude encoded: the sign lives in one bit
(``sign_bit``) and the remaining bits hold the magnitude; e.g. Homing_Offset uses bit 11, so -100 is 0x0864.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Model number the STS3215 reports at address 3.
STS3215_MODEL_NUMBER = 777
MODEL_NUMBERS: dict[str, int] = {"sts3215": STS3215_MODEL_NUMBER}
#: Encoder resolution (ticks per turn) and the largest raw position.
RESOLUTION = 4096
MAX_RAW = RESOLUTION - 1
#: Addresses below this one are EEPROM (written only while Lock = 0).
EEPROM_END = 40
BROADCAST_ID = 0xFE

#: Baud_Rate register value per baud rate.
BAUD_RATE_CODES: dict[int, int] = {
    1_000_000: 0,
    500_000: 1,
    250_000: 2,
    128_000: 3,
    115_200: 4,
    57_600: 5,
    38_400: 6,
    19_200: 7,
}


@dataclass(frozen=True)
class Register:
    """One entry of the control table."""

    name: str
    address: int
    size: int
    sign_bit: int | None = None
    read_only: bool = False

    @property
    def eeprom(self) -> bool:
        return self.address < EEPROM_END

    def encode(self, value: int) -> int:
        """User value -> unsigned register value (sign-magnitude where the register uses it)."""
        return encode_value(value, self.size, self.sign_bit)

    def decode(self, raw: int) -> int:
        """Unsigned register value -> user value."""
        return decode_value(raw, self.size, self.sign_bit)

    def to_bytes(self, value: int) -> list[int]:
        """User value -> little-endian byte list, as sent on the bus."""
        return int_to_bytes(self.encode(value), self.size)

    def from_bytes(self, data: bytes | list[int]) -> int:
        return self.decode(bytes_to_int(data))


def _table(*regs: Register) -> dict[str, Register]:
    return {r.name: r for r in regs}


#: The STS3215 control table.
STS3215: dict[str, Register] = _table(
    Register("Firmware_Major_Version", 0, 1, read_only=True),
    Register("Firmware_Minor_Version", 1, 1, read_only=True),
    Register("Model_Number", 3, 2, read_only=True),
    Register("ID", 5, 1),
    Register("Baud_Rate", 6, 1),
    Register("Return_Delay_Time", 7, 1),
    Register("Response_Status_Level", 8, 1),
    Register("Min_Position_Limit", 9, 2),
    Register("Max_Position_Limit", 11, 2),
    Register("Max_Temperature_Limit", 13, 1),
    Register("Max_Voltage_Limit", 14, 1),
    Register("Min_Voltage_Limit", 15, 1),
    Register("Max_Torque_Limit", 16, 2),
    Register("Phase", 18, 1),
    Register("Unloading_Condition", 19, 1),
    Register("LED_Alarm_Condition", 20, 1),
    Register("P_Coefficient", 21, 1),
    Register("D_Coefficient", 22, 1),
    Register("I_Coefficient", 23, 1),
    Register("Minimum_Startup_Force", 24, 2),
    Register("CW_Dead_Zone", 26, 1),
    Register("CCW_Dead_Zone", 27, 1),
    Register("Protection_Current", 28, 2),
    Register("Angular_Resolution", 30, 1),
    Register("Homing_Offset", 31, 2, sign_bit=11),
    Register("Operating_Mode", 33, 1),
    Register("Protective_Torque", 34, 1),
    Register("Protection_Time", 35, 1),
    Register("Overload_Torque", 36, 1),
    Register("Torque_Enable", 40, 1),
    Register("Acceleration", 41, 1),
    Register("Goal_Position", 42, 2, sign_bit=15),
    Register("Goal_Time", 44, 2),
    Register("Goal_Velocity", 46, 2, sign_bit=15),
    Register("Torque_Limit", 48, 2),
    Register("Lock", 55, 1),
    Register("Present_Position", 56, 2, sign_bit=15, read_only=True),
    Register("Present_Velocity", 58, 2, sign_bit=15, read_only=True),
    Register("Present_Load", 60, 2, sign_bit=10, read_only=True),
    Register("Present_Voltage", 62, 1, read_only=True),
    Register("Present_Temperature", 63, 1, read_only=True),
    Register("Status", 65, 1, read_only=True),
    Register("Moving", 66, 1, read_only=True),
    Register("Present_Current", 69, 2, sign_bit=15, read_only=True),
    Register("Maximum_Acceleration", 85, 1),
)

#: Size of the memory map the emulator keeps per servo.
MEMORY_SIZE = 128


def register(name: str) -> Register:
    """Look a register up by name (KeyError with the known names otherwise)."""
    try:
        return STS3215[name]
    except KeyError:
        raise KeyError(f"unknown STS3215 register '{name}'") from None


def register_at(address: int) -> Register | None:
    for reg in STS3215.values():
        if reg.address == address:
            return reg
    return None


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Signed int -> sign-magnitude, sign in ``sign_bit`` (ValueError if the magnitude does not fit)."""
    magnitude = abs(int(value))
    if magnitude >= (1 << sign_bit):
        raise ValueError(f"magnitude {magnitude} does not fit below sign bit {sign_bit}")
    return magnitude | (1 << sign_bit) if value < 0 else magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    """Sign-magnitude with the sign in ``sign_bit`` -> signed int (bits above the sign bit are ignored)."""
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


def encode_value(value: int, size: int, sign_bit: int | None = None) -> int:
    value = int(value)
    if sign_bit is not None:
        return encode_sign_magnitude(value, sign_bit)
    if not 0 <= value < (1 << (8 * size)):
        raise ValueError(f"value {value} does not fit in {size} unsigned byte(s)")
    return value


def decode_value(raw: int, size: int, sign_bit: int | None = None) -> int:
    raw &= (1 << (8 * size)) - 1
    return decode_sign_magnitude(raw, sign_bit) if sign_bit is not None else raw


def int_to_bytes(value: int, size: int) -> list[int]:
    """Unsigned int -> little-endian byte list (what the STS series expects)."""
    return [(value >> (8 * i)) & 0xFF for i in range(size)]


def bytes_to_int(data: bytes | list[int]) -> int:
    return sum((b & 0xFF) << (8 * i) for i, b in enumerate(data))


def span(*names: str) -> tuple[int, int]:
    """(start address, length) of the smallest block covering the named registers (for one sync read)."""
    regs = [register(n) for n in names]
    start = min(r.address for r in regs)
    end = max(r.address + r.size for r in regs)
    return start, end - start


def checksum(body: bytes | list[int]) -> int:
    """Protocol checksum over ID, LEN, INST/ERR and parameters."""
    return (~sum(body)) & 0xFF
