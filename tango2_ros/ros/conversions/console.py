"""`tango2_msgs` as the JSON-ready dicts the operator console shows (tango2_ros.console.live channels).

NaN (a reading that is missing) becomes None, which JSON can carry; the page draws a gap for it.
"""
from __future__ import annotations

import math

from tango2_msgs.msg import (ActuatorCommand, CTReport, GreenhouseState, ModelStatus, NavigationDecision,
                             OwnShipState, SceneDescription, TargetArray, TargetAssessment)
from tango2_ros.ros.conversions.stamps import stamp_to_seconds

ROLES = {TargetAssessment.ROLE_GIVE_WAY: "give-way", TargetAssessment.ROLE_STAND_ON: "stand-on"}
ACTUATOR_FIELDS = ("vent_pct", "heating_pct", "thermal_screen_pct", "shade_screen_pct", "co2_dosing_pct", "fan_pct")


def number(value: float, digits: int = 2) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def own_ship_view(message: OwnShipState) -> dict:
    return {"latitude_deg": number(message.latitude_deg, 6), "longitude_deg": number(message.longitude_deg, 6),
            "course_deg": number(message.course_over_ground_deg, 1), "speed_kn": number(message.speed_over_ground_kn, 1),
            "heading_deg": number(message.heading_deg, 1), "position_valid": message.position_valid}


def targets_view(message: TargetArray) -> list[dict]:
    return [{"id": t.id, "name": t.name, "north_m": number(t.north_m, 0), "east_m": number(t.east_m, 0),
             "course_deg": number(t.course_deg, 1), "speed_kn": number(t.speed_kn, 1),
             "bearing_deg": number(t.bearing_deg, 1), "range_m": number(t.range_m, 0), "cpa_m": number(t.cpa_m, 0),
             "tcpa_s": number(t.tcpa_s, 0)} for t in message.targets]


def decision_view(message: NavigationDecision) -> dict:
    return {"state": message.state, "status_reason": message.status_reason, "rules": list(message.rules),
            "rationale": message.rationale, "action_required": message.action_required,
            "target_course_deg": number(message.target_course_deg, 1),
            "target_speed_kn": number(message.target_speed_kn, 1),
            "assessments": [{"target_id": a.target_id, "encounter": a.encounter_name, "role": ROLES.get(a.role, ""),
                             "risk": number(a.risk)} for a in message.assessments]}


def scene_view(message: SceneDescription) -> dict:
    return {"text": message.text, "language": message.language, "model": message.model,
            "corrections": len(message.corrections), "latency_s": number(message.latency_s)}


def climate_point(message: GreenhouseState) -> dict:
    return {"t": stamp_to_seconds(message.header.stamp), "temperature": number(message.air_temperature_c),
            "humidity": number(message.relative_humidity_pct), "co2": number(message.co2_ppm, 0)}


def greenhouse_view(message: GreenhouseState) -> dict:
    actuators = {name.removesuffix("_pct"): number(getattr(message, name), 0) for name in ACTUATOR_FIELDS}
    return {"crop": message.crop, "stage": message.crop_stage, "is_day": message.is_day,
            "actuators": {**actuators, "irrigation": message.irrigation_on, "lights": message.lights_on},
            "invalid_readings": list(message.invalid_readings)}


def command_view(message: ActuatorCommand) -> dict:
    return {"sequence": message.sequence, "controller": message.controller, "model": message.model,
            "verdict": message.verdict, "reasons": list(message.reasons), "rationale": message.rationale,
            "setpoints": [{"name": s.name, "value": number(s.value, 1), "approved": number(s.approved_value, 1)}
                          for s in message.setpoints]}


def report_view(message: CTReport) -> dict:
    return {"study_key": message.study_key, "present": [f.label for f in message.findings if f.present],
            "impression": message.impression, "report_model": message.report_model,
            "findings_model": message.findings_model, "latency_s": number(message.latency_s)}


def status_view(message: ModelStatus) -> dict:
    return {"slot": message.slot, "model": message.model.name, "version": message.model.version,
            "state": message.model.state, "event": message.event, "reason": message.model.reason,
            "previous_version": message.previous_version}
