"""greenhouse_bridge: the greenhouse's sensors over MQTT -> GreenhouseState on `sdf/state` (and the weather
forecast -> `sdf/forecast`).

Subscribes `<topic_prefix>/state` and `<topic_prefix>/forecast` on the broker with QoS 1 and a persistent session
(a fixed client id, clean_session false), so readings sent while the bridge or the broker was down arrive after
the reconnect (paho reconnects by itself); `<topic_prefix>/bridge` says "online" (retained; "offline" as the last
will) so the sensor side knows the bridge listens. A state payload is a JSON object of readings named as in
GreenhouseState plus `time` (UTC seconds of the measurement, used as the stamp; the arrival time when absent).
Each reading is checked against a plausible range (tango2_ros.sdf.payloads): a missing, non-numeric, non-finite
or out-of-range reading (a 999 C air temperature) becomes NaN and is named in `invalid_readings`; the rest of the
message still counts.
A payload that is not a JSON object is dropped and counted. Counts and the broker connection are on /diagnostics.
"""
from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from rclpy.time import Time

from tango2_msgs.msg import GreenhouseState, WeatherForecast
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.farm import forecast_to_ros, state_to_ros
from tango2_ros.sdf.payloads import forecast_from_payload, readings_from_payload

class GreenhouseBridge(Tango2Node):
    def __init__(self) -> None:
        super().__init__("greenhouse_bridge")
        self.declare("mqtt_host", "127.0.0.1", "MQTT broker host.")
        self.declare("mqtt_port", 1883, "MQTT broker port.", min_value=1, max_value=65535)
        self.declare("topic_prefix", "tango2/greenhouse/compartment1", "MQTT topics: <prefix>/state, <prefix>/forecast.")
        self.declare("client_id", "tango2-greenhouse-bridge", "Fixed MQTT client id (keeps the session).")
        self.declare("crop", "tomato", "Crop in this compartment.")
        self.declare("crop_stage", "fruiting", "Crop stage.")
        self._client: mqtt.Client | None = None
        self._closing = False
        self._lock = threading.Lock()
        self._counts = {"messages": 0, "rejected": 0, "invalid_readings": 0, "connects": 0}

    def executor_threads(self) -> int:
        return 1

    def configure(self) -> None:
        self._state_pub = self.create_publisher(GreenhouseState, "sdf/state", 10)
        self._forecast_pub = self.create_publisher(WeatherForecast, "sdf/forecast", 10)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.param("client_id"),
                             clean_session=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        # birth and last-will messages: the sensor side can see whether the bridge listens
        client.will_set(f"{self.param('topic_prefix')}/bridge", "offline", qos=1, retain=True)
        self._client = client
        self.set_status(WARN, "connecting to the MQTT broker")

    def activate(self) -> None:
        self._closing = False
        self._client.connect_async(self.param("mqtt_host"), self.param("mqtt_port"), keepalive=10)
        self._client.loop_start()

    def deactivate(self) -> None:
        self._closing = True  # a disconnect we asked for is no alarm
        if self._client is not None:
            self._client.publish(f"{self.param('topic_prefix')}/bridge", "offline", qos=1, retain=True)
            self._client.disconnect()
            self._client.loop_stop()

    def cleanup(self) -> None:
        self.deactivate()
        self._client = None

    # -- MQTT (paho's thread) ----------------------------------------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            self.set_status(ERROR, f"MQTT broker refused the connection: {reason_code}")
            return
        prefix = self.param("topic_prefix")
        client.subscribe([(f"{prefix}/state", 1), (f"{prefix}/forecast", 1)])
        client.publish(f"{prefix}/bridge", "online", qos=1, retain=True)
        self._counts["connects"] += 1
        self.set_status(OK, f"connected to {self.param('mqtt_host')}:{self.param('mqtt_port')}", **self._counts)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        if self._closing:
            return
        self.set_status(ERROR, f"MQTT broker connection lost ({reason_code}): reconnecting", **self._counts)

    def _on_message(self, _client, _userdata, message) -> None:
        try:
            if message.topic.endswith("/forecast"):
                self._forecast(message.payload)
            else:
                self._state(message.payload)
        except ValueError as exc:
            self._counts["rejected"] += 1
            self.set_values(**self._counts, last_rejected=f"{message.topic}: {exc}"[:200])

    def _state(self, payload: bytes) -> None:
        readings = readings_from_payload(payload)
        state = state_to_ros(readings, self.param("crop"), self.param("crop_stage"))
        state.header.stamp = self._stamp(readings.time_s)
        state.header.frame_id = self.param("topic_prefix")
        self._counts["messages"] += 1
        self._counts["invalid_readings"] += len(state.invalid_readings)
        self._state_pub.publish(state)
        self.set_values(**self._counts, last_invalid=",".join(state.invalid_readings))

    def _forecast(self, payload: bytes) -> None:
        forecast = forecast_from_payload(payload)
        message = forecast_to_ros(forecast)
        message.header.stamp = self._stamp(forecast.time_s)
        self._forecast_pub.publish(message)

    def _stamp(self, measured_s: float | None):
        """The measurement's time, or the arrival time when the payload has none."""
        return Time(nanoseconds=round(measured_s * 1e9)).to_msg() if measured_s is not None \
            else self.get_clock().now().to_msg()


def main(args: list[str] | None = None) -> int:
    return run_node(GreenhouseBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
