"""nmea_bridge: own ship's NMEA 0183 sensors and AIS over UDP -> OwnShipState and raw targets.

Listens on UDP (`udp_port`, optionally joining `multicast_group` as IEC 61162-450 networks deliver sentences),
decodes RMC/GGA/VTG/HDT/ROT/DPT/DBT/MWV (own ship), TTM (radar/ARPA targets) and AIS VDM (other ships) with
tango2_ros.sds.nmea, keeps the picture in tango2_ros.sds.picture, and publishes
`sds/own_ship` (OwnShipState, on every position fix and at 1 Hz with its age, invalid once stale) and
`sds/raw_targets` (TargetArray at `targets_rate_hz`: AIS and radar targets as received, expired after their
timeouts; fusing them is the tracker's job). Bad sentences (checksum, truncated, garbage, out of range) are
counted on /diagnostics with the last reason and dropped; the node keeps listening.

Messages are stamped with the ROS clock on arrival, or with the RMC's UTC time (`stamp_with_gnss_time`, for
ships whose systems keep GNSS time, and for the simulator, whose time runs faster than the wall clock). With
`targets_on_fix` the target picture is also published right after every position fix: a sender that ends each
sensor cycle with its RMC gets one picture per cycle. Cleaning up the node (lifecycle) forgets every target.
"""
from __future__ import annotations

import math
import time

from rclpy.time import Time

from tango2_msgs.msg import OwnShipState, TargetArray
from tango2_ros.core.net import UdpListener
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.ship import own_ship_to_ros, raw_target_to_ros
from tango2_ros.sds.intake import SensorIntake
from tango2_ros.sds.picture import Timeouts


class NmeaBridge(Tango2Node):
    def __init__(self) -> None:
        super().__init__("nmea_bridge")
        self.declare("udp_address", "0.0.0.0", "Address to listen on.")
        self.declare("udp_port", 10110, "UDP port of the NMEA stream.", min_value=1, max_value=65535)
        self.declare("multicast_group", "", "IEC 61162-450 multicast group to join (e.g. 239.192.0.1); empty = none.")
        self.declare("position_stale_s", 3.0, "A position (or heading, depth, wind) older than this is reported "
                     "invalid.", min_value=0.1, max_value=600.0)
        self.declare("ais_timeout_s", 60.0, "AIS targets not heard for this long are dropped.", min_value=1.0,
                     max_value=3600.0)
        self.declare("radar_timeout_s", 10.0, "Radar targets not updated for this long are dropped.", min_value=0.5,
                     max_value=600.0)
        self.declare("targets_rate_hz", 2.0, "Rate of sds/raw_targets.", min_value=0.1, max_value=50.0)
        self.declare("stamp_with_gnss_time", False, "Stamp messages with the RMC's UTC time instead of arrival time.")
        self.declare("targets_on_fix", False, "Also publish sds/raw_targets right after every position fix.")
        self._listener: UdpListener | None = None
        self._timers_made: list = []
        self._own_pub = self._targets_pub = None
        self._intake = self._new_intake()

    def _new_intake(self) -> SensorIntake:
        return SensorIntake(Timeouts(self.param("position_stale_s"), self.param("ais_timeout_s"),
                                     self.param("radar_timeout_s")))

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self._intake = self._new_intake()
        self._own_pub = self.create_lifecycle_publisher(OwnShipState, "sds/own_ship", 10)
        self._targets_pub = self.create_lifecycle_publisher(TargetArray, "sds/raw_targets", 10)
        self._listener = UdpListener(self.param("udp_address"), self.param("udp_port"), self.handle_datagram,
                                     self.param("multicast_group"))
        self._timers_made = [self.create_timer(1.0, self._publish_own_ship),
                             self.create_timer(1.0 / self.param("targets_rate_hz"), self._publish_targets)]
        self.set_status(WARN, f"listening on UDP {self.param('udp_address')}:{self._listener.port}, no position yet",
                        port=self._listener.port)

    def activate(self) -> None:
        self._listener.start()

    def deactivate(self) -> None:
        self._listener.stop()

    def cleanup(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for timer in self._timers_made:
            self.destroy_timer(timer)
        for publisher in (self._own_pub, self._targets_pub):
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
        self._timers_made, self._own_pub, self._targets_pub = [], None, None

    # -- input -----------------------------------------------------------------------------------------------
    def handle_datagram(self, data: bytes) -> None:
        rejected = self._intake.counts["rejected"]
        fixes = self._intake.feed(data, time.monotonic())
        if self._intake.counts["rejected"] != rejected:
            self.set_values(**self._intake.counts, last_rejected=self._intake.last_rejected)
        if fixes:
            self._publish_own_ship()
            if self.param("targets_on_fix"):
                self._publish_targets()

    # -- output ----------------------------------------------------------------------------------------------
    def _own_state(self) -> tuple[OwnShipState, object]:
        own = self._intake.own_ship(time.monotonic())
        message = own_ship_to_ros(own)
        if self.param("stamp_with_gnss_time") and math.isfinite(own.utc_s):
            message.header.stamp = Time(nanoseconds=round(own.utc_s * 1e9)).to_msg()  # the instant of the fix
        else:
            message.header.stamp = self.get_clock().now().to_msg()
        return message, own

    def _publish_own_ship(self) -> None:
        state, _ = self._own_state()
        self._own_pub.publish(state)
        if state.position_valid:
            # the message changes only when the situation does (each change is logged); numbers go in the values
            targets = len(self._intake.current_targets(time.monotonic()))
            self.set_status(OK, f"position valid ({state.source}), {targets} target(s)", **self._intake.counts,
                            last_rejected=self._intake.last_rejected, latitude_deg=f"{state.latitude_deg:.5f}",
                            longitude_deg=f"{state.longitude_deg:.5f}")
        else:
            reason = "no position yet" if math.isinf(state.position_age_s) else \
                f"position invalid or {state.position_age_s:.1f} s old"
            self.set_status(WARN, reason, **self._intake.counts, last_rejected=self._intake.last_rejected)

    def _publish_targets(self) -> None:
        state, own = self._own_state()
        now = time.monotonic()
        targets = self._intake.current_targets(now)
        array = TargetArray(targets=[raw_target_to_ros(t, own, now) for t in targets])
        array.header.stamp, array.header.frame_id = state.header.stamp, "wgs84"
        self._targets_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    return run_node(NmeaBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
