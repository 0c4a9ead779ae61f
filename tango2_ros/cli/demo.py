"""`tango2 demo`: the project's main job on embedded defaults (what `make demo` runs).

Brings up the `llm` profile, prints the live graph, waits for the model manager to deploy the signed default
model from the local registry, asks the on-device model a question through the `/tango2/llm/generate` action
(streaming its answer), then asks again with a JSON Schema, then once more the way an existing agent would,
through the OpenAI-style HTTP API of the `llm_api` node, and shuts down.
"""
from __future__ import annotations

import json
import signal
import sys

import rclpy
from rclpy.action import ActionClient

from tango2_msgs.action import Generate
from tango2_msgs.msg import ChatMessage
from tango2_ros.bringup.profiles import load_profile
from tango2_ros.cli.output import emit
from tango2_ros.ros.actions import goal_result, spinning_wait
from tango2_ros.ros.deployments import wait_for_deployments

DEMO_SCHEMA = {
    "type": "object",
    "properties": {
        "vessel": {"type": "string", "enum": ["container ship", "fishing vessel", "sailing yacht", "tug"]},
        "action": {"type": "string", "enum": ["keep course and speed", "turn to starboard", "slow down"]},
        "reason": {"type": "string", "maxLength": 160},
    },
    "required": ["vessel", "action", "reason"],
}


def register(commands) -> None:
    parser = commands.add_parser("demo", help="run the main demonstration on embedded defaults")
    parser.add_argument("--profile", default="llm", help="profile to bring up (default: llm)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from tango2_ros.bringup.supervisor import Supervisor

    supervisor = Supervisor(load_profile(args.profile), out=sys.stderr if args.json else sys.stdout)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    report: dict = {"profile": args.profile}
    try:
        report["all_active"] = supervisor.start()
        graph = supervisor.graph()
        report["graph"] = graph.as_dict()
        if not args.json:
            print("\nLive ROS graph:\n" + graph.format() + "\n", flush=True)
        if report["all_active"]:
            report["deployment"] = _wait_for_deployment(supervisor.node, quiet=args.json)
            report["answers"] = _ask(supervisor.node, quiet=args.json)
            if any(n.executable == "llm_api" for n in load_profile(args.profile).nodes):
                report["answers"].append(_ask_http(quiet=args.json))
    finally:
        supervisor.shutdown()
    ok = (report["all_active"] and report.get("deployment", {}).get("state") == "active"
          and all(a["finish_reason"] in ("stop", "length") for a in report.get("answers", [])))
    report["ok"] = ok
    emit(args, report, "demo finished: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


def _wait_for_deployment(node, *, quiet: bool, timeout_s: float = 60.0) -> dict:
    """Wait until the model manager reports the slot's signed version serving (its status topic is latched)."""
    final = wait_for_deployments(node, "/tango2/models/status", ["llm"], timeout_s)["llm"]
    if final is None:
        deployment = {"state": "unknown", "detail": f"no deployment event within {timeout_s:.0f} s"}
    else:
        deployment = {"state": final.model.state, "model": f"{final.model.name}@{final.model.version}",
                      "event": final.event, "sha256": final.model.sha256, "detail": final.model.reason}
    if not quiet:
        print(f"Model manager: {deployment.get('model', '')} {deployment['state']} ({deployment.get('event', '')}"
              f"{', ' + deployment['detail'] if deployment['detail'] else ''}): a signed, verified artifact from the "
              "local registry\n", flush=True)
    return deployment


def _ask_http(*, quiet: bool, base: str = "http://127.0.0.1:8000/v1") -> dict:
    """One chat completion through the OpenAI-style endpoint, as any OpenAI client would send it."""
    import urllib.error
    import urllib.request

    question = "In one sentence: what is a lighthouse for?"
    try:
        with urllib.request.urlopen(f"{base}/models", timeout=30) as response:
            model = json.load(response)["data"][0]["id"]
        body = json.dumps({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": question}]})
        request = urllib.request.Request(f"{base}/chat/completions", body.encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.load(response)
    except (OSError, urllib.error.URLError, KeyError, IndexError, ValueError) as exc:
        return {"question": question, "finish_reason": "error", "error": f"{base}: {exc}"}
    choice = answer["choices"][0]
    if not quiet:
        print(f"POST {base}/chat/completions (any OpenAI client)\nQ: {question}\n"
              f"A: {choice['message']['content']}\n   [{choice['finish_reason']}, "
              f"{answer['usage']['completion_tokens']} tokens, {answer['model']}]\n", flush=True)
    return {"question": question, "text": choice["message"]["content"], "finish_reason": choice["finish_reason"],
            "tokens": answer["usage"]["completion_tokens"], "model": answer["model"], "via": "http"}


def _ask(node, *, quiet: bool) -> list[dict]:
    client = ActionClient(node, Generate, "/tango2/llm/generate")
    if not client.wait_for_server(timeout_sec=30.0):
        return [{"finish_reason": "error", "error": "action server /tango2/llm/generate did not appear"}]
    questions = [
        # the embedded base model is a general chat model: the ship's questions go to the learned bridge
        # assistant (`tango2 sds demo`, `tango2 sds ask`), which answers them from the live picture
        ("In two sentences, describe a harbour at dawn.", ""),
        ("A fishing vessel is crossing ahead from starboard at 2 NM. Describe it and the action as JSON.",
         json.dumps(DEMO_SCHEMA)),
    ]
    answers = []
    for question, schema in questions:
        if not quiet:
            print(f"Q: {question}\nA: ", end="", flush=True)
        printed = [0]

        def on_feedback(message, printed=printed) -> None:
            if not quiet:
                text = message.feedback.partial_text
                print(text[printed[0]:], end="", flush=True)
                printed[0] = len(text)

        goal = Generate.Goal(messages=[ChatMessage(role="user", content=question)], json_schema=schema,
                             max_tokens=96, temperature=0.0)
        sent = client.send_goal_async(goal, feedback_callback=on_feedback)
        rclpy.spin_until_future_complete(node, sent, timeout_sec=30.0)
        handle = sent.result()
        response = goal_result(handle, spinning_wait(node), 120.0) if handle is not None else None
        if response is None:
            answers.append({"question": question, "finish_reason": "error", "error": "no result within 120 s"})
            continue
        result = response.result
        if not quiet:
            print(result.text[printed[0]:])
            print(f"   [{result.finish_reason}, {result.tokens} tokens, {result.tokens_per_s:.0f} tok/s, "
                  f"{result.model}]\n", flush=True)
        answers.append({"question": question, "text": result.text, "finish_reason": result.finish_reason,
                        "tokens": result.tokens, "tokens_per_s": result.tokens_per_s, "model": result.model,
                        "error": result.error})
    client.destroy()
    return answers
