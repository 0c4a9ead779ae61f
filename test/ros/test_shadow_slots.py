"""A candidate in a shadow slot through real nodes: `tango2 models shadow` deploys it to the slot's own llm_node, sets
the judging node's sample count and the promotion; `tango2 models status` shows both slots and the judge's score;
when the judge reports the candidate promoted, the model manager deploys it to the slot it shadowed."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros
NS = "/t19shadow"
MODEL = "smollm2-135m-instruct"
TANGO2 = [sys.executable, "-m", "tango2_ros.cli"]


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*TANGO2, *args], capture_output=True, text=True, timeout=timeout)


def test_a_shadow_slot_is_deployed_scored_and_promoted_by_its_judge(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from helpers.lifecycle import bring_up
    from helpers.registry import llm_arguments, make_keys, manager_arguments, publish
    from helpers.ros import ros_node, spawn, stop, wait_until
    from tango2_ros.core.runtime.default_models import default_llm_path

    make_keys(tmp_path, "fleet")
    for version in ("1.0.0", "1.1.0"):
        publish(tmp_path, MODEL, version, default_llm_path())
    shadow_node = ["-m", "tango2_ros.nodes.llm_node", "--ros-args", "-r", "__node:=llm_shadow", "-r", f"__ns:={NS}",
                   "-r", "llm/generate:=llm_shadow/generate", "-p", "n_parallel:=1", "-p", "n_ctx_per_seq:=512",
                   "-p", "nice:=10"]
    manager = manager_arguments(tmp_path, NS, MODEL, **{
        "slots": "[llm, llm_shadow]", "reconcile_period_s": 0.3, "llm.version": "1.1.0",
        "llm_shadow.model": MODEL, "llm_shadow.node": f"{NS}/llm_shadow", "llm_shadow.version": "1.1.0",
        "llm_shadow.shadow_of": "llm"})
    judge = ["-m", "tango2_ros.nodes.safety_supervisor", "--ros-args", "-r", "__node:=safety_supervisor",
             "-r", f"__ns:={NS}"]
    processes = [spawn(llm_arguments(NS, "n_parallel:=1", "n_ctx_per_seq:=512")), spawn(shadow_node),
                 spawn(manager), spawn(judge)]
    try:
        with ros_node("t19_shadow_probe") as node:
            for name in ("llm_node", "llm_shadow", "models", "safety_supervisor"):
                bring_up(node, f"{NS}/{name}")
            refused = _cli("models", "shadow", f"{MODEL}@1.0.0", "--slot", "nothing", "--manager", f"{NS}/models")
            assert refused.returncode == 2 and "has no slot 'nothing'" in refused.stderr, refused.stderr
            done = _cli("models", "shadow", f"{MODEL}@1.0.0", "--slot", "llm", "--samples", "4", "--promote",
                        "--manager", f"{NS}/models", "--json")
            assert done.returncode == 0, done.stdout + done.stderr
            said = json.loads(done.stdout)
            assert said["slot"] == "llm_shadow" and said["success"], said
            assert said["samples_set_on"] == [f"{NS}/safety_supervisor"]

            # the judge (here: a report as the safety supervisor sends it) says the candidate passed its gate
            diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            score = {"model": f"{MODEL}@1.0.0", "decisions": 4, "asked": 4, "agreement_pct": 100.0,
                     "supervisor_rejections": 0, "supervisor_clamps": 0, "would_violate": 0, "latency_s_p50": 0.8,
                     "promoted": True, "retired": ""}
            report = DiagnosticArray(status=[DiagnosticStatus(name=f"{NS}/judge", message="judging", values=[
                KeyValue(key="shadow", value=json.dumps(score)), KeyValue(key="swap_hold", value="")])])
            node.create_timer(0.5, lambda: diagnostics.publish(report))  # as a node's heartbeat does

            def status() -> dict:
                shown = _cli("models", "status", "--manager", f"{NS}/models", "--json")
                assert shown.returncode == 0, shown.stderr
                return {row["slot"]: row for row in json.loads(shown.stdout)["slots"]}

            assert wait_until(lambda: status()["llm"]["active_version"] == "1.0.0", 90, interval=1.0)
            rows = status()
            assert rows["llm"]["event"] == "promoted" and rows["llm_shadow"]["active_version"] == "1.0.0"
            assert rows["llm_shadow"]["shadow"]["judge"] == f"{NS}/judge"
            assert rows["llm"]["versions"] == ["1.0.0", "1.1.0"]
            human = _cli("models", "status", "--manager", f"{NS}/models")
            assert "llm_shadow" in human.stdout and "4 decisions, 100.0 % agreed" in human.stdout, human.stdout
    finally:
        outputs = "".join(stop(process) for process in processes)
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 2000):][:6000]
