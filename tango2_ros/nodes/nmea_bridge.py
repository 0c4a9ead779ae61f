"""nmea_bridge: own ship's NMEA 0183 sensors and AIS over UDP -> OwnShipState and raw targets.

Listens on UDP (`udp_port`, optionally joining `multicast_group` as IEC 61162-450 networks deliver sentences),
decodes RMC/GGA/VTG/HDT (own ship), TTM (radar/ARPA targets) and AIS VDM (other ships), and publishes
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
import socket
import struct
import threading
import time
from dataclasses import dataclass

from rclpy.time import Time

from tango2_msgs.msg import OwnShipState, Target, TargetArray
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.ship import set_relative
from tango2_ros.sds.geometry import NM_M, Kinematics, relative, to_geographic, to_local
from tango2_ros.sds.nmea import AisReport, Fix, Heading, Motion, NmeaDecoder, NmeaError, RadarTarget, split_datagram

# AIS navigational status and ship type -> TANGO2 vessel category (COLREG rule 18)
AIS_STATUS_CATEGORY = {2: Target.CATEGORY_NOT_UNDER_COMMAND, 3: Target.CATEGORY_RESTRICTED_MANEUVERABILITY,
                       4: Target.CATEGORY_CONSTRAINED_BY_DRAUGHT, 7: Target.CATEGORY_FISHING, 8: Target.CATEGORY_SAILING}
AIS_TYPE_CATEGORY = {30: Target.CATEGORY_FISHING, 36: Target.CATEGORY_SAILING}


@dataclass
class Track:
    message: Target
    updated: float


class NmeaBridge(Tango2Node):
    def __init__(self) -> None:
        super().__init__("nmea_bridge")
        self.declare("udp_address", "0.0.0.0", "Address to listen on.")
        self.declare("udp_port", 10110, "UDP port of the NMEA stream.", min_value=1, max_value=65535)
        self.declare("multicast_group", "", "IEC 61162-450 multicast group to join (e.g. 239.192.0.1); empty = none.")
        self.declare("position_stale_s", 3.0, "A position older than this is reported invalid.", min_value=0.1,
                     max_value=600.0)
        self.declare("ais_timeout_s", 60.0, "AIS targets not heard for this long are dropped.", min_value=1.0,
                     max_value=3600.0)
        self.declare("radar_timeout_s", 10.0, "Radar targets not updated for this long are dropped.", min_value=0.5,
                     max_value=600.0)
        self.declare("targets_rate_hz", 2.0, "Rate of sds/raw_targets.", min_value=0.1, max_value=50.0)
        self.declare("stamp_with_gnss_time", False, "Stamp messages with the RMC's UTC time instead of arrival time.")
        self.declare("targets_on_fix", False, "Also publish sds/raw_targets right after every position fix.")
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._running = threading.Event()
        self._timers_made: list = []
        self._own_pub = self._targets_pub = None
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._decoder = NmeaDecoder()
        self._fix: Fix | None = None
        self._fix_time = 0.0
        self._motion: tuple[float, float, str] | None = None  # course, speed, source
        self._heading: tuple[float, float] | None = None  # heading, time
        self._tracks: dict[str, Track] = {}
        self._static: dict[int, AisReport] = {}  # AIS type 5/24 names and ship types by MMSI
        self._ais_status: dict[int, int] = {}  # last navigational status by MMSI (types 1-3)
        self._counts = {"datagrams": 0, "sentences": 0, "rejected": 0, "fixes": 0, "ais": 0, "radar": 0}
        self._last_error = ""

    # -- lifecycle -------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self._forget_everything()
        self._own_pub = self.create_publisher(OwnShipState, "sds/own_ship", 10)
        self._targets_pub = self.create_publisher(TargetArray, "sds/raw_targets", 10)
        self._socket = self._open_socket()
        self._timers_made = [self.create_timer(1.0, self._publish_own_ship),
                             self.create_timer(1.0 / self.param("targets_rate_hz"), self._publish_targets)]
        self.set_status(WARN, f"listening on UDP {self.param('udp_address')}:{self._socket.getsockname()[1]}, "
                              "no position yet", port=self._socket.getsockname()[1])

    def activate(self) -> None:
        self._running.set()
        self._reader = threading.Thread(target=self._read, name="nmea-udp", daemon=True)
        self._reader.start()

    def deactivate(self) -> None:
        self._running.clear()
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    def cleanup(self) -> None:
        self.deactivate()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for timer in self._timers_made:
            self.destroy_timer(timer)
        self._timers_made = []
        for publisher in (self._own_pub, self._targets_pub):
            if publisher is not None:
                self.destroy_publisher(publisher)
        self._own_pub = self._targets_pub = None

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        group = self.param("multicast_group")
        sock.bind((group or self.param("udp_address"), self.param("udp_port")))
        if group:
            membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(self.param("udp_address")))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.settimeout(0.5)
        return sock

    # -- input -----------------------------------------------------------------------------------------------
    def _read(self) -> None:
        while self._running.is_set() and self._socket is not None:
            try:
                data, _ = self._socket.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self._counts["datagrams"] += 1
            self.handle_datagram(data)

    def handle_datagram(self, data: bytes) -> None:
        try:
            lines = split_datagram(data)
        except NmeaError as exc:
            self._reject(str(exc))
            return
        for line in lines:
            self._counts["sentences"] += 1
            try:
                event = self._decoder.feed(line)
                if event is not None:
                    self._apply(event)
            except NmeaError as exc:
                self._reject(f"{line[:20]}...: {exc}")
            except Exception as exc:  # noqa: BLE001 - one odd sentence must never stop the listener
                self._reject(f"{line[:20]}...: unexpected {exc.__class__.__name__}: {exc}")

    def _reject(self, reason: str) -> None:
        self._counts["rejected"] += 1
        self._last_error = reason
        self.set_values(**self._counts, last_rejected=reason)

    def _apply(self, event) -> None:
        now = time.monotonic()
        with self._lock:
            if isinstance(event, Fix):
                self._counts["fixes"] += 1
                if math.isfinite(event.latitude_deg) and math.isfinite(event.longitude_deg):
                    self._fix, self._fix_time = event, now
                if math.isfinite(event.course_deg) or math.isfinite(event.speed_kn):
                    self._motion = (event.course_deg, event.speed_kn, event.source)
            elif isinstance(event, Motion):
                self._motion = (event.course_deg, event.speed_kn, event.source)
            elif isinstance(event, Heading):
                self._heading = (event.heading_deg, now)
            elif isinstance(event, RadarTarget):
                self._counts["radar"] += 1
                self._radar(event, now)
            elif isinstance(event, AisReport):
                self._counts["ais"] += 1
                self._ais(event, now)
        if isinstance(event, Fix):
            self._publish_own_ship()
            if self.param("targets_on_fix"):
                self._publish_targets()

    def _radar(self, event: RadarTarget, now: float) -> None:
        track_id = f"RADAR-{event.number:02d}"
        if event.status == "L":  # the radar lost it
            self._tracks.pop(track_id, None)
            return
        heading = self._heading[0] if self._heading else math.nan
        if self._fix is None or ((event.bearing_relative or event.course_relative) and not math.isfinite(heading)):
            self._reject(f"{track_id}: needs own position and, for relative bearings, heading")
            return
        true_bearing = (event.bearing_deg + (heading if event.bearing_relative else 0.0)) % 360.0
        course = (event.course_deg + (heading if event.course_relative else 0.0)) % 360.0
        north = event.range_nm * math.cos(math.radians(true_bearing))
        east = event.range_nm * math.sin(math.radians(true_bearing))
        lat, lon = to_geographic(north, east, self._fix.latitude_deg, self._fix.longitude_deg)
        self._tracks[track_id] = Track(Target(
            id=track_id, sources=Target.SOURCE_RADAR, name=event.name, category=Target.CATEGORY_UNKNOWN,
            latitude_deg=lat, longitude_deg=lon, course_deg=course, speed_kn=event.speed_kn,
            position_covariance=[(50.0 + 0.01 * event.range_nm * NM_M) ** 2, 0.0, 0.0,
                                 (50.0 + 0.01 * event.range_nm * NM_M) ** 2], quality=0.7), now)

    def _ais(self, event: AisReport, now: float) -> None:
        if event.message_type in (5, 24):  # static data: name and ship type for later position reports
            self._static[event.mmsi] = event
            track = self._tracks.get(f"AIS-{event.mmsi}")
            if track is not None:
                track.message.name, track.message.category = event.name, self._category(event.mmsi)
            return
        if not (math.isfinite(event.latitude_deg) and math.isfinite(event.longitude_deg)):
            self._reject(f"AIS {event.mmsi}: position not available")
            return
        if event.message_type in (1, 2, 3):
            self._ais_status[event.mmsi] = event.navigation_status
        static = self._static.get(event.mmsi)
        self._tracks[f"AIS-{event.mmsi}"] = Track(Target(
            id=f"AIS-{event.mmsi}", sources=Target.SOURCE_AIS, mmsi=event.mmsi, name=static.name if static else "",
            category=self._category(event.mmsi), latitude_deg=event.latitude_deg, longitude_deg=event.longitude_deg,
            course_deg=event.course_deg, speed_kn=event.speed_kn, position_covariance=[100.0, 0.0, 0.0, 100.0],
            quality=1.0), now)

    def _category(self, mmsi: int) -> int:
        """Rule 18 category: from the navigational status (not under command, fishing, ...), else the ship type."""
        if self._ais_status.get(mmsi) in AIS_STATUS_CATEGORY:
            return AIS_STATUS_CATEGORY[self._ais_status[mmsi]]
        static = self._static.get(mmsi)
        if static is not None and static.ship_type in AIS_TYPE_CATEGORY:
            return AIS_TYPE_CATEGORY[static.ship_type]
        return Target.CATEGORY_POWER_DRIVEN if static is not None else Target.CATEGORY_UNKNOWN

    # -- output ----------------------------------------------------------------------------------------------
    def _own_state(self) -> OwnShipState:
        now = time.monotonic()
        with self._lock:
            fix, fix_time, motion, heading = self._fix, self._fix_time, self._motion, self._heading
        message = OwnShipState(latitude_deg=math.nan, longitude_deg=math.nan, course_over_ground_deg=math.nan,
                               speed_over_ground_kn=math.nan, heading_deg=math.nan, position_age_s=math.inf)
        sources = []
        if fix is not None:
            age = now - fix_time
            message.latitude_deg, message.longitude_deg = fix.latitude_deg, fix.longitude_deg
            message.position_age_s = age
            message.position_valid = fix.valid and age <= self.param("position_stale_s")
            sources.append(fix.source)
        if motion is not None:
            message.course_over_ground_deg, message.speed_over_ground_kn = motion[0], motion[1]
            sources.append(motion[2])
        if heading is not None and now - heading[1] <= self.param("position_stale_s"):
            message.heading_deg, message.heading_valid = heading[0], True
            sources.append("HDT")
        message.source = ",".join(dict.fromkeys(sources))
        if self.param("stamp_with_gnss_time") and fix is not None and math.isfinite(fix.utc_s):
            message.header.stamp = Time(nanoseconds=round(fix.utc_s * 1e9)).to_msg()  # the instant of the fix
        else:
            message.header.stamp = self.get_clock().now().to_msg()
        message.header.frame_id = "wgs84"
        return message

    def _publish_own_ship(self) -> None:
        if not self._running.is_set():
            return
        state = self._own_state()
        self._own_pub.publish(state)
        if state.position_valid:
            # the message changes only when the situation does (each change is logged); numbers go in the values
            self.set_status(OK, f"position valid ({state.source}), {len(self._tracks)} target(s)", **self._counts,
                            last_rejected=self._last_error, latitude_deg=f"{state.latitude_deg:.5f}",
                            longitude_deg=f"{state.longitude_deg:.5f}")
        else:
            reason = "no position yet" if not math.isfinite(state.position_age_s) else \
                f"position invalid or {state.position_age_s:.1f} s old"
            self.set_status(WARN, reason, **self._counts, last_rejected=self._last_error)

    def _publish_targets(self) -> None:
        if not self._running.is_set():
            return
        now = time.monotonic()
        own = self._own_state()
        with self._lock:
            for track_id in [k for k, t in self._tracks.items()
                             if now - t.updated > self.param("radar_timeout_s" if k.startswith("RADAR") else "ais_timeout_s")]:
                del self._tracks[track_id]
            tracks = list(self._tracks.values())
        array = TargetArray()
        array.header.stamp = own.header.stamp
        array.header.frame_id = "wgs84"
        for track in tracks:
            target = track.message
            target.age_s = now - track.updated
            if math.isfinite(own.latitude_deg):
                _relative(target, own)
            array.targets.append(target)
        self._targets_pub.publish(array)


def _relative(target: Target, own: OwnShipState) -> None:
    """Fill the fields relative to own ship (CPA/TCPA only when both motions are known)."""
    north, east = to_local(target.latitude_deg, target.longitude_deg, own.latitude_deg, own.longitude_deg)
    own_motion = (own.course_over_ground_deg, own.speed_over_ground_kn)
    known = all(math.isfinite(v) for v in (*own_motion, target.course_deg, target.speed_kn))
    own_ship = Kinematics(0.0, 0.0, *own_motion) if known else Kinematics(0.0, 0.0, 0.0, 0.0)
    other = Kinematics(north, east, target.course_deg, target.speed_kn) if known else Kinematics(north, east, 0.0, 0.0)
    set_relative(target, relative(own_ship, other, motions_known=known))


def main(args: list[str] | None = None) -> int:
    return run_node(NmeaBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
