"""The greenhouse's field side, as real hardware speaks it: the greenhouse controller's Modbus TCP server
(pymodbus), which is the plant simulator's end of the actuator link (the sensors' MQTT broker is
tango2_ros.core.mqtt's).
"""
from __future__ import annotations

import asyncio
import threading
from typing import Callable

from pymodbus.constants import ExcCodes

from tango2_ros.core.net import free_port, wait_for_port
from tango2_ros.errors import UserError
from tango2_ros.sdf.actuators import REGISTER_COUNT, Command, command_from_registers


class PlantModbusServer:
    """The greenhouse controller's holding registers (tango2_ros.sdf.actuators), served over Modbus TCP.

    Each complete write of the registers is handed to `on_write(command, stamp_s)`. Like a controller that checks
    its commands' sequence, it refuses (exception 3, illegal data value) a write stamped older than the command it
    holds, and takes a repeat of the same stamp without handing it on again. `fault` (for tests) is called before
    a write and may return a delay in seconds to hold the answer (a controller that times out)."""

    def __init__(self, on_write: Callable[[Command, int], None], port: int | None = None, device_id: int = 1) -> None:
        self.port, self.device_id, self.on_write = port or free_port(), device_id, on_write
        self.fault: Callable[[], float] | None = None
        self.writes, self.repeats, self.refused = 0, 0, 0
        self.stamp = 0
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="modbus-server", daemon=True)

    def start(self) -> "PlantModbusServer":
        self._thread.start()
        if not self._ready.wait(5.0) or not wait_for_port(self.port, 5.0):
            raise UserError(f"the Modbus server did not start on port {self.port}")
        return self

    def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def main() -> None:
            device = SimDevice(self.device_id, [SimData(0, count=REGISTER_COUNT, values=0, datatype=DataType.REGISTERS)],
                               action=self._action)
            self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            self._ready.set()
            await self._server.serve_forever()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(main())

    async def _action(self, function_code, _start, address, count, _registers, set_values):
        if set_values is None:
            return None
        if self.fault is not None:
            delay = self.fault()
            if delay:
                await asyncio.sleep(delay)
        if function_code == 16 and address == 0 and count == REGISTER_COUNT:
            command, stamp = command_from_registers([int(v) for v in set_values])
            if stamp < self.stamp:
                self.refused += 1
                return ExcCodes.ILLEGAL_VALUE
            if stamp == self.stamp:
                self.repeats += 1
                return None
            self.writes += 1
            self.stamp = stamp
            self.on_write(command, stamp)
        return None

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout=10.0)
        self._thread.join(timeout=5.0)
