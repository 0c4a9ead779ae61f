"""The greenhouse's actuators: ranges, rates, switching limits and their Modbus holding registers.

Values are percent (0-100); irrigation and lights are on/off (0 or 100). A command is a full mapping of every
actuator name to its value; a proposal may name only some (the rest keep their present values).
"""
from __future__ import annotations

from dataclasses import dataclass

Command = dict[str, float]

VENT, HEATING, THERMAL_SCREEN, SHADE_SCREEN = "vent", "heating", "thermal_screen", "shade_screen"
CO2_DOSING, FAN, IRRIGATION, LIGHTS = "co2_dosing", "fan", "irrigation", "lights"


@dataclass(frozen=True)
class ActuatorSpec:
    name: str
    register: int  # Modbus holding register (value x 100, unsigned)
    binary: bool = False  # on/off: 0 or 100
    max_rate_pct_min: float = 0.0  # 0 = no rate limit
    min_on_s: float = 0.0  # once switched on, stays on at least this long (Mycodo-style, for devices that
    min_off_s: float = 0.0  # rapid cycling damages), and off at least this long
    max_on_s: float = 0.0  # 0 = unlimited


ACTUATORS: dict[str, ActuatorSpec] = {spec.name: spec for spec in (
    ActuatorSpec(VENT, 0, max_rate_pct_min=10.0),
    ActuatorSpec(HEATING, 1, max_rate_pct_min=20.0, min_off_s=300.0),
    ActuatorSpec(THERMAL_SCREEN, 2, max_rate_pct_min=5.0),
    ActuatorSpec(SHADE_SCREEN, 3, max_rate_pct_min=5.0),
    ActuatorSpec(CO2_DOSING, 4),
    ActuatorSpec(FAN, 5),
    ActuatorSpec(IRRIGATION, 6, binary=True, min_off_s=600.0, max_on_s=900.0),
    ActuatorSpec(LIGHTS, 7, binary=True, min_on_s=1800.0, min_off_s=1800.0),
)}
# The command's state stamp (UTC seconds, high and low 16 bits), written with the values in one request: the
# controller (or simulator) knows which state the actuators now answer.
STAMP_REGISTERS = (8, 9)
REGISTER_COUNT = 10
SCALE = 100  # register = value x 100


def registers_from_command(command: Command, stamp_s: float) -> list[int]:
    values = [0] * REGISTER_COUNT
    for name, spec in ACTUATORS.items():
        values[spec.register] = int(round(min(100.0, max(0.0, command[name])) * SCALE))
    seconds = int(stamp_s) & 0xFFFFFFFF
    values[STAMP_REGISTERS[0]], values[STAMP_REGISTERS[1]] = seconds >> 16, seconds & 0xFFFF
    return values


def command_from_registers(values: list[int]) -> tuple[Command, int]:
    """-> (command, stamp seconds)."""
    command = {name: values[spec.register] / SCALE for name, spec in ACTUATORS.items()}
    return command, (values[STAMP_REGISTERS[0]] << 16) | values[STAMP_REGISTERS[1]]



def all_off() -> Command:
    return {name: 0.0 for name in ACTUATORS}
