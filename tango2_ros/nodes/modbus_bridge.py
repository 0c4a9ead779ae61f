"""modbus_bridge: the supervisor's approved commands -> the greenhouse controller's Modbus TCP holding registers.

Subscribes `sdf/command` (only the safety supervisor publishes it) and writes every actuator (value x 100) and the
command's state stamp in one `write_registers` request (registers in tango2_ros.sdf.actuators), from a worker
thread so a slow or absent controller never blocks ROS. A failed write is retried with a growing back-off, and
before each retry the registers are read back: a write whose answer was lost but which landed is not written
again. After `alarm_after_failures` failures the status is ERROR (the alarm) until a write succeeds. Set-points
are absolute, so a newer command arriving during retries replaces the waiting one (counted as superseded): the
newest is never lost. A write that lands after its read-back came too late can still arrive twice; it carries the
same values and stamp, and the controller refuses writes older than what it holds (see sdf/field.py); a command
the controller refuses (illegal data value) is dropped, not retried, and reported as ERROR.
"""
from __future__ import annotations

import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException

from tango2_msgs.msg import ActuatorCommand
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node
from tango2_ros.ros.conversions.stamps import stamp_to_seconds
from tango2_ros.sdf.actuators import ACTUATORS, registers_from_command

REFUSED = "the controller refused the command"


class ModbusBridge(Tango2Node):
    def __init__(self) -> None:
        super().__init__("modbus_bridge")
        self.declare("host", "127.0.0.1", "Modbus TCP server (the greenhouse controller).")
        self.declare("port", 502, "Modbus TCP port.", min_value=1, max_value=65535)
        self.declare("device_id", 1, "Modbus device (unit) id.", min_value=0, max_value=247)
        self.declare("timeout_s", 1.0, "Timeout of one request.", min_value=0.05, max_value=60.0)
        self.declare("alarm_after_failures", 3, "Failed writes in a row before the alarm.", min_value=1,
                     max_value=1000)
        self._wake = threading.Condition()
        self._waiting: ActuatorCommand | None = None
        self._running = False
        self._worker: threading.Thread | None = None
        self._counts = {"commands": 0, "written": 0, "failed_writes": 0, "superseded": 0}

    def executor_threads(self) -> int:
        """Its callback only hands the command to the writer thread: one executor thread (with rclpy's
        multi-threaded executor some commands arrived late, which made the simulated farm's week much slower)."""
        return 1

    def configure(self) -> None:
        self._client = ModbusTcpClient(self.param("host"), port=self.param("port"), timeout=self.param("timeout_s"),
                                       retries=0, reconnect_delay=0.1, reconnect_delay_max=2.0)
        self.create_subscription(ActuatorCommand, "sdf/command", self._on_command, 10)
        self.set_status(WARN, f"no command written yet to {self.param('host')}:{self.param('port')}")

    def activate(self) -> None:
        self._running = True
        self._worker = threading.Thread(target=self._write_loop, name="modbus-writer", daemon=True)
        self._worker.start()

    def deactivate(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify()
        if self._worker is not None:
            self._worker.join(timeout=5.0)

    def cleanup(self) -> None:
        self.deactivate()
        self._client.close()

    def _on_command(self, message: ActuatorCommand) -> None:
        with self._wake:
            self._counts["commands"] += 1
            if self._waiting is not None:
                self._counts["superseded"] += 1
            self._waiting = message
            self._wake.notify()

    def _write_loop(self) -> None:
        failures, backoff = 0, 0.05
        while True:
            with self._wake:
                while self._running and self._waiting is None:
                    self._wake.wait()
                if not self._running:
                    return
                message = self._waiting
            command = {s.name: float(s.approved_value) for s in message.setpoints if s.name in ACTUATORS}
            if set(command) != set(ACTUATORS):
                with self._wake:
                    if self._waiting is message:
                        self._waiting = None
                self.set_status(ERROR, "a command without every actuator was not written", **self._counts)
                continue
            error = self._write(registers_from_command(command, stamp_to_seconds(message.header.stamp)),
                                check_first=failures > 0)
            if error is not None and error.startswith(REFUSED):
                with self._wake:  # the controller will never take this one: drop it, keep the alarm visible
                    if self._waiting is message:
                        self._waiting = None
                    self._counts["refused"] = self._counts.get("refused", 0) + 1
                failures = 0
                self.set_status(ERROR, error, **self._counts)
                continue
            with self._wake:
                if error is None:
                    if self._waiting is message:
                        self._waiting = None
                    self._counts["written"] += 1
                    failures, backoff = 0, 0.05
                else:
                    self._counts["failed_writes"] += 1
                    failures += 1
            if error is None:
                self.set_status(OK, "writing commands", **self._counts)
                continue
            level = ERROR if failures >= self.param("alarm_after_failures") else WARN
            self.set_status(level, f"ALARM: {failures} failed writes, retrying: {error}" if level == ERROR
                            else f"write failed, retrying: {error}", **self._counts)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _write(self, registers: list[int], check_first: bool) -> str | None:
        """One write; after a failure, read the registers first: a write whose answer was lost may have landed."""
        try:
            if not self._client.connected and not self._client.connect():
                return f"cannot connect to {self.param('host')}:{self.param('port')}"
            if check_first:
                present = self._client.read_holding_registers(0, count=len(registers),
                                                              device_id=self.param("device_id"))
                if not present.isError() and list(present.registers) == registers:
                    self._counts["confirmed_by_reading"] = self._counts.get("confirmed_by_reading", 0) + 1
                    return None
            result = self._client.write_registers(0, registers, device_id=self.param("device_id"))
        except ModbusException as exc:
            self._client.close()
            return str(exc)
        if result.isError():
            if getattr(result, "exception_code", None) == ExcCodes.ILLEGAL_VALUE:
                return f"{REFUSED} (illegal data value: older than the command it holds?)"
            return f"the controller answered {result}"
        return None


def main(args: list[str] | None = None) -> int:
    return run_node(ModbusBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
