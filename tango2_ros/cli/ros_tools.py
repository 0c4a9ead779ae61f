"""Basics of the `ros2` CLI for machines that cannot install it: graph, node, topic, service and action tools."""
from __future__ import annotations

import json
import threading
import time

import rclpy
import yaml
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError
from tango2_ros.ros.actions import goal_result, spinning_wait, wait_until_serving
from tango2_ros.ros.graph import settled_snapshot
from tango2_ros.ros.interfaces import fill, import_interface, to_data
from tango2_ros.ros.session import ros_session

# A new client sees the server before the server has matched the client's response reader; a request sent in
# that window is answered into the void. One-shot CLI clients wait this long after discovery before calling.
RESPONSE_MATCH_S = 0.5


def register(commands) -> None:
    graph = commands.add_parser("graph", help="print the live ROS graph")
    graph.add_argument("--wait", type=float, default=10.0, metavar="S", help="longest time to let discovery settle")
    graph.add_argument("--json", action="store_true")
    graph.set_defaults(handler=run_graph)

    tools = {}
    for kind, plural in (("node", "nodes"), ("topic", "topics"), ("service", "services"), ("action", "actions")):
        tools[kind] = commands.add_parser(kind, help=f"{kind} tools").add_subparsers(dest="verb", required=True)
        listing = tools[kind].add_parser("list", help=f"list {plural}")
        listing.add_argument("--json", action="store_true")
        listing.set_defaults(handler=lambda a, plural=plural: _list(a, plural))

    topic = tools["topic"]
    echo = topic.add_parser("echo", help="print messages of a topic")
    echo.add_argument("topic")
    echo.add_argument("type", nargs="?", help="message type, e.g. std_msgs/msg/String (default: from the graph)")
    echo.add_argument("--count", type=int, default=0, help="stop after N messages (default: run until Ctrl-C)")
    echo.add_argument("--timeout", type=float, default=0.0, metavar="S", help="give up after S seconds")
    echo.add_argument("--json", action="store_true", help="one JSON object per message")
    echo.set_defaults(handler=run_echo)
    hz = topic.add_parser("hz", help="measure the publishing rate of a topic")
    hz.add_argument("topic")
    hz.add_argument("type", nargs="?")
    hz.add_argument("--duration", type=float, default=5.0, metavar="S", help="measure for S seconds")
    hz.add_argument("--json", action="store_true")
    hz.set_defaults(handler=run_hz)

    call = tools["service"].add_parser("call", help="call a service")
    call.add_argument("service")
    call.add_argument("type", help="service type, e.g. tango2_msgs/srv/ListModels")
    call.add_argument("request", nargs="?", default="{}", help="request fields as YAML, e.g. '{task: llm}'")
    call.add_argument("--timeout", type=float, default=10.0, metavar="S")
    call.add_argument("--json", action="store_true")
    call.set_defaults(handler=run_call)

    send = tools["action"].add_parser("send_goal", help="send a goal and wait for the result")
    send.add_argument("action")
    send.add_argument("type", help="action type, e.g. tango2_msgs/action/Generate")
    send.add_argument("goal", help="goal fields as YAML, e.g. '{prompt: Hello, max_tokens: 32}'")
    send.add_argument("--feedback", action="store_true", help="print feedback as it arrives")
    send.add_argument("--timeout", type=float, default=120.0, metavar="S")
    send.add_argument("--wait-ready", type=float, default=30.0, metavar="S",
                      help="wait this long for the serving node to be active with a model (0 = do not wait)")
    send.add_argument("--json", action="store_true")
    send.set_defaults(handler=run_send_goal)


def run_graph(args) -> int:
    with ros_session("tango2_cli") as node:
        graph = settled_snapshot(node, max_wait_s=args.wait)
    emit(args, graph.as_dict(), graph.format())
    return 0


def _list(args, what: str) -> int:
    with ros_session("tango2_cli") as node:
        data = getattr(settled_snapshot(node), what)
    if isinstance(data, dict):
        human = "\n".join(f"{name}  [{', '.join(types)}]" for name, types in data.items())
    else:
        human = "\n".join(data)
    emit(args, {what: data}, human)
    return 0


def _parse_yaml(text: str, what: str) -> dict:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.MarkedYAMLError as exc:
        column = f" at column {exc.problem_mark.column + 1}" if exc.problem_mark else ""
        raise UserError(f"{what} is not valid YAML{column}: {exc.problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} must be a YAML mapping of field values, got {text!r}")
    return data


def _topic_type(node, topic: str, given: str | None, wait_s: float) -> type:
    if given:
        return import_interface(given)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        types = dict(node.get_topic_names_and_types()).get(topic)
        if types:
            return import_interface(types[0])
        time.sleep(0.1)
    raise UserError(f"topic {topic} has no publisher yet; give its type explicitly")


def _matching_qos(node, topic: str) -> QoSProfile:
    """Subscribe with QoS that every current publisher can serve (transient local when they offer it)."""
    publishers = node.get_publishers_info_by_topic(topic)
    qos = QoSProfile(depth=10)
    if publishers and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers):
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers):
        qos.reliability = ReliabilityPolicy.BEST_EFFORT
    return qos


def _spin_until(node, done: threading.Event, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    while not done.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        executor.spin_once(timeout_sec=0.1)
    return True


def run_echo(args) -> int:
    with ros_session("tango2_cli_echo") as node:
        message_type = _topic_type(node, args.topic, args.type, args.timeout or 5.0)
        done = threading.Event()
        received = []

        def on_message(message) -> None:
            data = to_data(message)
            received.append(data)
            if args.json:
                emit(args, data, "")
            else:
                print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip() + "\n---", flush=True)
            if args.count and len(received) >= args.count:
                done.set()

        node.create_subscription(message_type, args.topic, on_message, _matching_qos(node, args.topic))
        finished = _spin_until(node, done, args.timeout)
    if args.timeout and not finished and not received:
        raise UserError(f"no message on {args.topic} within {args.timeout} s")
    return 0


def run_hz(args) -> int:
    with ros_session("tango2_cli_hz") as node:
        message_type = _topic_type(node, args.topic, args.type, 5.0)
        stamps: list[float] = []
        node.create_subscription(
            message_type, args.topic, lambda _m: stamps.append(time.monotonic()), _matching_qos(node, args.topic)
        )
        _spin_until(node, threading.Event(), args.duration)
    if len(stamps) < 2:
        emit(args, {"topic": args.topic, "messages": len(stamps), "rate_hz": None},
             f"{args.topic}: {len(stamps)} message(s) in {args.duration} s, no rate")
        return 0
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    data = {"topic": args.topic, "messages": len(stamps), "rate_hz": rate, "min_gap_s": min(gaps), "max_gap_s": max(gaps)}
    emit(args, data, f"{args.topic}: {rate:.2f} Hz over {len(stamps)} messages (gaps {min(gaps):.3f}-{max(gaps):.3f} s)")
    return 0


def _typed_request(type_name: str, part: str, kind: str, text: str) -> tuple[type, object]:
    """The interface class and its `part` (Request or Goal) filled from YAML text."""
    interface = import_interface(type_name)
    if not hasattr(interface, part):
        raise UserError(f"{type_name} is not {kind} type")
    return interface, fill(getattr(interface, part)(), _parse_yaml(text, f"the {part.lower()}"))


def run_call(args) -> int:
    service_type, request = _typed_request(args.type, "Request", "a service", args.request)
    with ros_session("tango2_cli_call") as node:
        client = node.create_client(service_type, args.service)
        if not client.wait_for_service(timeout_sec=min(args.timeout, 5.0)):
            raise UserError(f"service {args.service} is not available")
        time.sleep(RESPONSE_MATCH_S)
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
        if not future.done():
            raise UserError(f"service {args.service} did not answer within {args.timeout} s")
        response = to_data(future.result())
    emit(args, response, yaml.safe_dump(response, sort_keys=False, allow_unicode=True).rstrip())
    return 0


def run_send_goal(args) -> int:
    action_type, goal = _typed_request(args.type, "Goal", "an action", args.goal)
    with ros_session("tango2_cli_action") as node:
        client = ActionClient(node, action_type, args.action)
        if not client.wait_for_server(timeout_sec=max(args.wait_ready, min(args.timeout, 5.0))):
            raise UserError(f"action server {args.action} is not available")
        if args.wait_ready > 0:
            problem = wait_until_serving(node, args.action, args.wait_ready)
            if problem:
                raise UserError(f"{problem} (waited {args.wait_ready:g} s; --wait-ready S waits longer)")
        time.sleep(RESPONSE_MATCH_S)

        def on_feedback(message) -> None:
            if args.feedback:
                print(json.dumps({"feedback": to_data(message.feedback)}, ensure_ascii=False), flush=True)

        send = client.send_goal_async(goal, feedback_callback=on_feedback)
        rclpy.spin_until_future_complete(node, send, timeout_sec=args.timeout)
        handle = send.result()
        if handle is None or not handle.accepted:
            raise UserError(f"goal rejected by {args.action}")
        response = goal_result(handle, spinning_wait(node), args.timeout)
        if response is None:
            handle.cancel_goal_async()
            raise UserError(f"no result from {args.action} within {args.timeout} s")
        result = to_data(response.result)
    emit(args, result, yaml.safe_dump(result, sort_keys=False, allow_unicode=True).rstrip())
    return 0
