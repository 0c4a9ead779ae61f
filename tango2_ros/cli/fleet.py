"""`tango2 fleet ...`: model releases for a fleet of devices.

    tango2 fleet simulate --devices N [--bad-release] [--offline-s S] [--registry-outage-s S] [--domain-base D]
                          [--json]
    tango2 fleet rollout NAME@VERSION --broker HOST:PORT --devices ID,ID,... [--canary ID] [--slot SLOT]
                         [--window-s S] [--decisions DIR] [--timeout-s S] [--json]
    tango2 fleet status --broker HOST:PORT [--json]

`simulate` starts N device stacks (each the fleet-device profile's nodes on a DDS domain of its own, with its own
model cache and mosquitto broker), a fleet broker they are bridged to, an OCI registry and the fleet controller, all
on loopback; publishes SmolLM2-135M-Instruct 1.1.0 and rolls it out from 1.0.0 through a canary (device-1),
while the last device's link is down for `--offline-s` and each device's users keep asking it questions.
`--bad-release` publishes a 1.1.0 that is not a model: the canary cannot load it and the rollout rolls back.
`--registry-outage-s` stops the registry when the rollout widens: devices that cannot pull serve on and retry. It
prints the release, the canary, whether it rolled back, the telemetry messages the fleet received and, per
device, the version it serves at the end, when it changed, how long it was offline, the users' failed requests and
the telemetry that never arrived (tango2_ros/sim/fleet.py).

`rollout` is the fleet controller for a real fleet: it rolls a release that is in the fleet's registry out to the
devices whose fleet_agents are bridged to the broker, canary first (the first online device by id, or
`--canary`), and ends when every device serves it (exit 0) or the canary was rolled back (exit 1, with the
reason); `--decisions` keeps the devices' decision logs that arrive meanwhile in DIR/<device>/.

`status` reads a real fleet's broker: every device's retained state (release served, last swap failure) and
every rollout's retained report.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError

STATUS_LISTEN_S = 2.0


def register(commands) -> None:
    parser = commands.add_parser("fleet", help="roll model releases out to a fleet of devices", description=__doc__)
    sub = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    simulate = sub.add_parser("simulate", help="a fleet on this machine: canary rollout with telemetry back")
    simulate.add_argument("--devices", type=int, default=3, help="device stacks to start (at least 2)")
    simulate.add_argument("--bad-release", action="store_true", help="roll out a release that fails on the canary")
    simulate.add_argument("--offline-s", type=float, default=20.0, help="how long the last device's link is down")
    simulate.add_argument("--registry-outage-s", type=float, default=0.0,
                          help="stop the registry this long once the rollout widens (default: no outage)")
    simulate.add_argument("--domain-base", type=int, default=150, help="device i uses ROS_DOMAIN_ID D+i")
    simulate.add_argument("--timeout-s", type=float, default=600.0)
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(handler=run_simulate)
    rollout = sub.add_parser("rollout", help="roll a release out to a fleet: canary, then every device")
    rollout.add_argument("release", help="NAME@VERSION, published in the registry the devices pull from")
    rollout.add_argument("--broker", required=True, help="the fleet broker, HOST:PORT")
    rollout.add_argument("--devices", required=True, help="comma-separated device ids")
    rollout.add_argument("--canary", help="the canary device (default: the first online device by id)")
    rollout.add_argument("--slot", default="llm")
    rollout.add_argument("--window-s", type=float, default=60.0, help="how long the canary must be healthy")
    rollout.add_argument("--decisions", type=Path, help="keep the devices' decision logs here")
    rollout.add_argument("--timeout-s", type=float, default=3600.0)
    rollout.add_argument("--json", action="store_true")
    rollout.set_defaults(handler=run_rollout)
    status = sub.add_parser("status", help="what each device of a fleet serves, and the rollouts")
    status.add_argument("--broker", required=True, help="the fleet broker, HOST:PORT")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=run_status)


def run_simulate(args) -> int:
    from tango2_ros.sim.fleet import FleetPlan, FleetSimulation, report_text

    if not 0 < args.offline_s < args.timeout_s:
        raise UserError("--offline-s must be positive and shorter than --timeout-s")
    plan = FleetPlan(devices=args.devices, bad_release=args.bad_release, offline_s=args.offline_s,
                     domain_base=args.domain_base, timeout_s=args.timeout_s,
                     registry_outage_s=max(0.0, args.registry_outage_s))
    report = FleetSimulation(plan, say=lambda text: print(text, file=sys.stderr, flush=True)).run()
    emit(args, report, report_text(report))
    return 0


def run_rollout(args) -> int:
    from tango2_ros.core.fleet.controller import FleetController
    from tango2_ros.core.fleet.messages import DEVICE_ID, RELEASE
    from tango2_ros.core.fleet.rollout import CanaryPolicy, Phase

    devices = [device.strip() for device in args.devices.split(",") if device.strip()]
    if not RELEASE.match(args.release):
        raise UserError(f"{args.release!r}: give the release as NAME@VERSION")
    if not devices or not all(DEVICE_ID.match(device) for device in devices):
        raise UserError(f"--devices {args.devices!r}: comma-separated ids of 1-63 of a-z, 0-9, '-', '_'")
    policy = CanaryPolicy(window_s=args.window_s)
    controller = FleetController(*_broker(args.broker), client_id="tango2-fleet-rollout", policy=policy,
                                 decisions_dir=args.decisions)
    try:
        controller.start()
    except ConnectionError as exc:
        raise UserError(str(exc)) from exc
    try:
        threading.Event().wait(STATUS_LISTEN_S)  # the devices' retained states: who is online, what they serve
        try:
            rollout = controller.begin(args.release, args.slot, devices, canary=args.canary)
        except ValueError as exc:
            raise UserError(f"cannot start the rollout: {exc}") from exc
        print(f"rollout of {args.release}: canary {rollout.canary}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + args.timeout_s
        while (phase := controller.step()) not in (Phase.DONE, Phase.ROLLED_BACK):
            if time.monotonic() > deadline:
                raise UserError(f"the rollout did not finish within {args.timeout_s:g} s: {rollout.report()}")
            time.sleep(1.0)
        if args.decisions:
            threading.Event().wait(STATUS_LISTEN_S)  # what the devices sent with their last state
    finally:
        controller.stop()
    report = rollout.report()
    emit(args, report, f"{args.release}: {phase.value}" + (f" ({rollout.reason})" if rollout.reason else ""))
    return 1 if phase is Phase.ROLLED_BACK else 0


def _broker(broker: str) -> tuple[str, int]:
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--broker {broker!r}: use HOST:PORT")
    return host, int(port)


def run_status(args) -> int:
    import paho.mqtt.client as mqtt

    from tango2_ros.core.fleet.controller import ROLLOUT_TOPIC_ROOT
    from tango2_ros.core.fleet.messages import FleetMessageError, every_device, parse_state

    host, port = _broker(args.broker)
    devices, rollouts, problems = {}, {}, []
    connected = threading.Event()

    def on_message(_client, _userdata, message) -> None:
        try:
            if message.topic.startswith(ROLLOUT_TOPIC_ROOT + "/"):
                rollouts[message.topic.rsplit("/", 1)[1]] = json.loads(message.payload)
            else:
                state = parse_state(message.topic, message.payload)
                devices[state.device] = {"release": state.release, "slot": state.slot, "failed": state.failed}
        except (FleetMessageError, ValueError) as exc:
            problems.append(f"{message.topic}: {exc}")

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # a clean session: only the retained messages
    client.on_connect = lambda c, *_: (c.subscribe([(every_device("state"), 1), (ROLLOUT_TOPIC_ROOT + "/+", 1)]),
                                       connected.set())
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise UserError(f"cannot reach the fleet broker {args.broker}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(5.0):
            raise UserError(f"the fleet broker {args.broker} did not accept the connection")
        threading.Event().wait(STATUS_LISTEN_S)  # retained messages arrive at once; give a slow link its time
    finally:
        client.disconnect()
        client.loop_stop()
    report = {"devices": devices, "rollouts": rollouts, "unreadable": problems}
    lines = [f"{device:<16} {d['slot']:<8} {d['release'] or '(nothing)'}" + (f"  failed: {d['failed']}" if d['failed']
                                                                            else "")
             for device, d in sorted(devices.items())]
    lines += [f"rollout {r.get('release')}: {r.get('phase')}, canary {r.get('canary')}"
              + (f" ({r.get('reason')})" if r.get("reason") else "") for r in rollouts.values()]
    emit(args, report, "\n".join(lines) or "no device has reported to this broker")
    return 0
