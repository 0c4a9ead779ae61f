"""ROS time stamps (`builtin_interfaces/Time`) and seconds since the epoch."""
from __future__ import annotations

import math

from builtin_interfaces.msg import Time as TimeMsg


def stamp_to_seconds(stamp: TimeMsg) -> float:
    return stamp.sec + stamp.nanosec / 1e9


def seconds_to_stamp(seconds: float) -> TimeMsg:
    """Rounded to the nanosecond; the fraction never reaches 1e9 (the message would be refused)."""
    whole = math.floor(seconds)
    nanosec = int(round((seconds - whole) * 1e9))
    if nanosec >= 1_000_000_000:
        whole, nanosec = whole + 1, nanosec - 1_000_000_000
    return TimeMsg(sec=int(whole), nanosec=nanosec)


def older_stamp(a: TimeMsg, b: TimeMsg) -> TimeMsg:
    return a if stamp_to_seconds(a) <= stamp_to_seconds(b) else b
