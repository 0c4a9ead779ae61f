"""The farm's domain values and `tango2_msgs` (GreenhouseState, WeatherForecast, ActuatorCommand)."""
from __future__ import annotations

import datetime
import math

from tango2_msgs.msg import ActuatorCommand, ActuatorSetpoint, GreenhouseState, WeatherForecast
from tango2_ros.ros.conversions.stamps import stamp_to_seconds
from tango2_ros.sdf.actuators import ACTUATORS, Command
from tango2_ros.sdf.controllers import Observation
from tango2_ros.sdf.payloads import Forecast, Readings
from tango2_ros.sdf.supervisor import ACCEPTED, CLAMPED, REJECTED, Conditions

VERDICT_TO_ROS = {ACCEPTED: ActuatorCommand.VERDICT_ACCEPTED, CLAMPED: ActuatorCommand.VERDICT_CLAMPED,
                  REJECTED: ActuatorCommand.VERDICT_REJECTED}
VERDICT_FROM_ROS = {code: name for name, code in VERDICT_TO_ROS.items()}
NEEDED = ("air_temperature_c", "relative_humidity_pct", "co2_ppm")  # without these, no decision is informed


def observation_from_state(state: GreenhouseState, utc_offset_h: float = 0.0) -> Observation | None:
    """None when a reading every controller needs is invalid."""
    if any(name in state.invalid_readings for name in NEEDED):
        return None
    moment = datetime.datetime.fromtimestamp(stamp_to_seconds(state.header.stamp), datetime.timezone.utc) + \
        datetime.timedelta(hours=utc_offset_h)
    return Observation(hour=moment.hour + moment.minute / 60.0, air_temperature_c=state.air_temperature_c,
                       relative_humidity_pct=state.relative_humidity_pct, co2_ppm=state.co2_ppm,
                       outside_temperature_c=finite(state.outside_temperature_c, 10.0),
                       global_radiation_w_m2=finite(state.global_radiation_w_m2, 0.0),
                       substrate_water_pct=finite(state.substrate_water_pct, 75.0), is_day=state.is_day,
                       vent_pct=finite(state.vent_pct, 0.0), lights_on=state.lights_on)


def finite(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def conditions_from_state(state: GreenhouseState) -> Conditions | None:
    if "air_temperature_c" in state.invalid_readings or not math.isfinite(state.air_temperature_c):
        return None
    radiation = state.global_radiation_w_m2 if math.isfinite(state.global_radiation_w_m2) else 1000.0  # unknown: sunny
    return Conditions(state.air_temperature_c, state.is_day, radiation)


def proposal_from_message(message: ActuatorCommand) -> dict:
    """Names and values as sent (the supervisor judges them)."""
    return {setpoint.name: float(setpoint.value) for setpoint in message.setpoints}


def command_message(command: Command, proposal: dict | None, verdict: str, reasons: list[str], controller: str,
                    model: str, stamp, sequence: int, rationale: str = "") -> ActuatorCommand:
    message = ActuatorCommand(sequence=sequence, controller=controller, model=model, rationale=rationale[:300],
                              verdict=VERDICT_TO_ROS.get(verdict, ActuatorCommand.VERDICT_REJECTED),
                              reasons=[r[:200] for r in reasons])
    message.header.stamp = stamp
    for name in ACTUATORS:
        asked = (proposal or {}).get(name, math.nan)
        message.setpoints.append(ActuatorSetpoint(
            name=name, value=asked if isinstance(asked, float) else math.nan, approved_value=command[name], unit="%"))
    return message


def proposal_message(proposal: dict, controller: str, model: str, rationale: str, stamp, sequence: int):
    message = ActuatorCommand(sequence=sequence, controller=controller, model=model, rationale=rationale[:300],
                              verdict=ActuatorCommand.VERDICT_PENDING)
    message.header.stamp = stamp
    for name, value in proposal.items():
        message.setpoints.append(ActuatorSetpoint(name=str(name), value=float(value), approved_value=math.nan,
                                                  unit="%"))
    return message


def state_to_ros(readings: Readings, crop: str, stage: str) -> GreenhouseState:
    """The checked readings (the caller stamps the message)."""
    message = GreenhouseState(crop=crop, crop_stage=stage, invalid_readings=list(readings.invalid))
    for name, value in (readings.values | readings.flags).items():
        setattr(message, name, value)
    return message


def forecast_pairs(forecast: WeatherForecast | None, hours: int = 6) -> list[tuple[float, float]]:
    """The next `hours` of a forecast message as (outside C, sun W/m2); none before the first forecast."""
    if forecast is None:
        return []
    return list(zip(forecast.outside_temperature_c, forecast.global_radiation_w_m2))[:hours]


def forecast_to_ros(forecast: Forecast) -> WeatherForecast:
    return WeatherForecast(hours_ahead=forecast.hours_ahead, outside_temperature_c=forecast.outside_temperature_c,
                           global_radiation_w_m2=forecast.global_radiation_w_m2)
