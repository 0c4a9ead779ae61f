"""What a good passage is, for the in-process and the through-ROS COLREG runs alike."""


def check_run(run: dict) -> None:
    """No collision, every target passed at the safety distance, manoeuvres to starboard or slower and large
    enough to be apparent, and a stand-on vessel acting only when rule 17 allows it."""
    assert not run["collision"] and run["min_distance_nm"] >= 0.95, run
    for maneuver in run["maneuvers"]:  # starboard or slower, and readily apparent
        assert maneuver["course_change_deg"] >= 29.9 or maneuver["speed_change_kn"] <= -5.99, maneuver
        assert maneuver["course_change_deg"] >= 0, maneuver
    stand_on = {t["id"] for t in run["targets"] if t["role"] == "stand-on"}
    for maneuver in run["maneuvers"]:
        if set(maneuver["target_ids"]) <= stand_on:  # acting only for stand-on targets needs rule 17 to allow it
            assert maneuver["t_s"] >= 1199 or "17" in maneuver["rationale"], maneuver
