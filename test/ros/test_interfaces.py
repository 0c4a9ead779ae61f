"""Every tango2_msgs message, service and action crosses a process boundary over real DDS and comes back intact."""
import threading

import pytest
from rclpy.action import ActionClient

from helpers.ros import goal_response, result_of, ros_node, spawn, stop, wait_for_line, wait_until
from helpers.samples import interface_classes, sample
from tango2_ros.ros.interfaces import to_data

MESSAGES = interface_classes("tango2_msgs", "msg")
SERVICES = interface_classes("tango2_msgs", "srv")
ACTIONS = interface_classes("tango2_msgs", "action")

pytestmark = pytest.mark.ros


def test_the_vocabulary_of_all_three_domains_is_defined():
    expected_messages = {
        "Detection", "DetectionArray", "Target", "TargetArray", "NavigationDecision", "SceneDescription",
        "GreenhouseState", "ActuatorCommand", "CTFinding", "CTReport", "ChatMessage", "ModelInfo", "ModelStatus",
    }
    assert expected_messages <= set(MESSAGES)
    assert {"SwapModel", "ListModels", "Rollback"} <= set(SERVICES)
    assert {"Generate", "ReportCT"} <= set(ACTIONS)


@pytest.fixture(scope="module")
def peer():
    process = spawn(["-m", "helpers.interface_peer"], env={"PYTHONPATH": "test"})
    try:
        wait_for_line(process, "peer ready", timeout=60)
        yield process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def node(peer):
    with ros_node("interface_test") as node:
        yield node


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_round_trip(node, name):
    cls = MESSAGES[name]
    received = []
    arrived = threading.Event()
    subscription = node.create_subscription(
        cls, f"/t2test/msg/{name}/echo", lambda m: (received.append(m), arrived.set()), 10
    )
    publisher = node.create_publisher(cls, f"/t2test/msg/{name}", 10)
    try:
        message = sample(cls)
        assert wait_until(lambda: publisher.get_subscription_count() > 0 and subscription, 20)
        assert wait_until(lambda: (publisher.publish(message), arrived.wait(0.3))[1], 20), f"{name} never came back"
        assert to_data(received[0]) == to_data(message)
    finally:
        node.destroy_subscription(subscription)
        node.destroy_publisher(publisher)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_call(node, name):
    cls = SERVICES[name]
    client = node.create_client(cls, f"/t2test/srv/{name}")
    try:
        assert client.wait_for_service(timeout_sec=20)
        response = result_of(client.call_async(sample(cls.Request)), 20)
        assert to_data(response) == to_data(sample(cls.Response))
    finally:
        node.destroy_client(client)


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_action_goal_feedback_result(node, name):
    cls = ACTIONS[name]
    client = ActionClient(node, cls, f"/t2test/action/{name}")
    feedback = []
    try:
        assert client.wait_for_server(timeout_sec=20)
        handle = result_of(client.send_goal_async(sample(cls.Goal), feedback_callback=feedback.append), 20)
        assert handle.accepted
        result = goal_response(handle, 20).result
        assert to_data(result) == to_data(sample(cls.Result))
        assert wait_until(lambda: feedback, 5)
        assert to_data(feedback[0].feedback) == to_data(sample(cls.Feedback))
    finally:
        client.destroy()
