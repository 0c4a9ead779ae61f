"""`tango2 models status` and `tango2 models shadow`: what a running stack's model manager serves, and a candidate
deployed in shadow, over ROS (the rest of `tango2 models` works on files and stores).

A shadow slot is a manager slot with `<slot>.shadow_of` set: its node (an llm_node of its own) serves the
candidate, a domain node asks it beside the serving model and judges its answers (the farm's safety supervisor,
ct_report), and the manager promotes it into the slot it shadows when `<slot>.promote` is on and the judge's gate
passes.
"""
from __future__ import annotations

import time

from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError

LISTEN_S = 2.5  # long enough for the latched events and one /diagnostics heartbeat of every node
DISCOVERY_S = 10.0  # how long `--samples` looks for the judging nodes of a namespace


def register(sub) -> None:
    status = sub.add_parser("status", help="what a running model manager serves, per slot, with shadow scores")
    status.add_argument("--manager", default="/tango2/models", help="the model manager (default /tango2/models)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=run_status)
    shadow = sub.add_parser("shadow", help="deploy a candidate in shadow beside a slot's serving model")
    shadow.add_argument("reference", metavar="NAME@SPEC")
    shadow.add_argument("--slot", required=True, help="the slot to shadow (or its shadow slot)")
    shadow.add_argument("--samples", type=int, default=None, metavar="N",
                        help="decisions the judging nodes score before promoting or retiring it")
    shadow.add_argument("--promote", action="store_true", help="promote it into the slot once its gate passes")
    shadow.add_argument("--manager", default="/tango2/models", help="the model manager (default /tango2/models)")
    shadow.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the deployment")
    shadow.add_argument("--json", action="store_true")
    shadow.set_defaults(handler=run_shadow)


def run_status(args) -> int:
    from tango2_ros.ros.model_stack import ModelStack
    from tango2_ros.ros.session import ros_session

    with ros_session("tango2_cli_models_status") as node:
        stack = ModelStack(node, args.manager)
        shadow_slots = tuple(slot for slot, shadowed in stack.shadowed_slots().items() if shadowed)
        stack.listen(LISTEN_S, shadow_slots)
        rows = stack.rows()
    emit(args, {"manager": args.manager, "slots": rows}, _table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    if not rows:
        return "no slot has reported yet"
    lines = [f"{'slot':<14} {'model':<26} {'serving':<12} {'state':<9} {'last event':<12} versions"]
    for row in rows:
        lines.append(f"{row['slot']:<14} {row['model']:<26} {row['active_version'] or '-':<12} {row['state']:<9} "
                     f"{row['event']:<12} {', '.join(row['versions'])}")
        score = row["shadow"]
        if score:
            verdict = "promoted" if score.get("promoted") else score.get("retired") or "watching"
            lines.append(f"{'':<14} shadow score from {score['judge']}: {score.get('decisions')} decisions, "
                         f"{score.get('agreement_pct')} % agreed, {score.get('supervisor_rejections')} refused, "
                         f"{score.get('would_violate')} would violate; {verdict}")
    return "\n".join(lines)


def run_shadow(args) -> int:
    name, _, version = args.reference.partition("@")
    if not name or not version:
        raise UserError(f"{args.reference}: give NAME@VERSION (or NAME@TAG)")
    if args.samples is not None and not 1 <= args.samples <= 100000:
        raise UserError(f"--samples {args.samples}: use 1 to 100000")
    from tango2_msgs.srv import SwapModel
    from tango2_ros.ros.model_stack import ModelStack
    from tango2_ros.ros.session import ros_session

    with ros_session("tango2_cli_models_shadow") as node:
        stack = ModelStack(node, args.manager)
        slot = _shadow_slot(stack, args.slot)
        said = {"slot": slot, "candidate": args.reference}
        if args.promote:
            problem = stack.set_parameter(stack.manager, f"{slot}.promote", True)
            if problem:
                raise UserError(f"{stack.manager}: cannot set {slot}.promote: {problem}")
        if args.samples is not None:
            said["samples_set_on"] = _set_samples(stack, args.samples)
        answer = stack.call(SwapModel, f"{stack.manager}/swap", SwapModel.Request(name=name, version=version,
                                                                                 slot=slot), args.timeout)
        said.update(success=answer.success, message=answer.message, deferred=answer.deferred,
                    promote=args.promote)
    emit(args, said, f"{slot}: {answer.message}" + ("" if not args.promote else "; promoted once its gate passes"))
    return 0 if answer.success or answer.deferred else 1


def _shadow_slot(stack, slot: str) -> str:
    """`slot` itself when it is a shadow slot, else the manager's shadow slot of `slot`."""
    shadows_of = stack.shadowed_slots()
    if slot not in shadows_of:
        raise UserError(f"{stack.manager} has no slot {slot!r} (slots: {', '.join(shadows_of) or 'none'})")
    if shadows_of[slot]:
        return slot
    shadows = [s for s in shadows_of if shadows_of[s] == slot]
    if not shadows:
        raise UserError(f"slot {slot!r} has no shadow slot: configure one with `<name>.shadow_of: {slot}` and a node "
                        "that serves the candidate (see docs/models.md)")
    return shadows[0]


def _set_samples(stack, samples: int) -> list[str]:
    """Set `shadow.decisions` on every node of the manager's namespace that judges shadows. A new process discovers
    the nodes one by one, so the namespace is looked at again until a judge is found or DISCOVERY_S has passed."""
    namespace = stack.manager.rsplit("/", 1)[0] or "/"
    deadline = time.monotonic() + DISCOVERY_S
    judges, unreachable = _judges(stack, namespace)
    while not judges and time.monotonic() < deadline:
        time.sleep(0.3)
        judges, unreachable = _judges(stack, namespace)
    if not judges:
        raise UserError(f"no node in {namespace} judges shadows (none declares shadow.decisions)"
                        + (f"; not reachable: {', '.join(unreachable)}" if unreachable else ""))
    for fqn in judges:
        problem = stack.set_parameter(fqn, "shadow.decisions", samples)
        if problem:
            raise UserError(f"{fqn}: cannot set shadow.decisions: {problem}")
    return judges


def _judges(stack, namespace: str) -> tuple[list[str], list[str]]:
    """The nodes of `namespace` that declare `shadow.decisions`, and those whose parameters could not be read."""
    judges, unreachable = [], []
    for name, node_namespace in stack.node.get_node_names_and_namespaces():
        if node_namespace.rstrip("/") != namespace.rstrip("/"):
            continue
        fqn = f"{node_namespace.rstrip('/')}/{name}"
        try:
            if stack.parameter(fqn, "shadow.decisions") is not None:
                judges.append(fqn)
        except UserError:
            unreachable.append(fqn)  # no parameter services, or not discovered in time
    return judges, unreachable
