"""Drive and watch lifecycle nodes from tests through their real services."""
from __future__ import annotations

import time

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from helpers.ros import result_of, wait_until


# where each transition starts and where it ends when it succeeds
TRANSITIONS = {Transition.TRANSITION_CONFIGURE: ("unconfigured", "inactive"),
               Transition.TRANSITION_ACTIVATE: ("inactive", "active"),
               Transition.TRANSITION_DEACTIVATE: ("active", "inactive"),
               Transition.TRANSITION_CLEANUP: ("inactive", "unconfigured")}


def state_label(node, fqn: str, timeout: float = 60.0) -> str:
    """The node's lifecycle state as get_state answers it. A request sent too early is lost (the server has not
    discovered this client yet, or discovery still lists a dead process of the same name): ask again until one
    is answered."""
    client = node.create_client(GetState, f"{fqn}/get_state")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.wait_for_service(timeout_sec=0.5):
                future = client.call_async(GetState.Request())
                if wait_until(future.done, 1.0):
                    return future.result().current_state.label
                client.remove_pending_request(future)
        raise AssertionError(f"{fqn} did not answer get_state within {timeout} s")
    finally:
        node.destroy_client(client)


def wait_responsive(node, fqn: str, timeout: float = 60.0) -> None:
    """Until the node answers get_state."""
    state_label(node, fqn, timeout)


def change_state(node, fqn: str, transition_id: int, timeout: float = 120.0) -> bool:
    """Whether the transition succeeded. The answer to a brand-new client can be lost like any first request, so
    when none comes the node's state tells: the transition's end state is a success, a transition under way is
    waited for, and the start state means the request was lost and it is sent again."""
    start, end = TRANSITIONS[transition_id]
    wait_responsive(node, fqn)
    client = node.create_client(ChangeState, f"{fqn}/change_state")
    try:
        assert client.wait_for_service(timeout_sec=30), f"{fqn}/change_state did not appear"
        deadline = time.monotonic() + timeout
        future = None
        while time.monotonic() < deadline:
            if future is None:
                future = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
            if wait_until(future.done, 10.0):
                return future.result().success
            label = state_label(node, fqn)
            if label == end:
                client.remove_pending_request(future)
                return True
            if label == start:  # not received, or refused and answered into the void: ask again
                client.remove_pending_request(future)
                future = None
        raise AssertionError(f"{fqn} did not answer change_state within {timeout} s")
    finally:
        node.destroy_client(client)


def bring_up(node, fqn: str) -> None:
    assert change_state(node, fqn, Transition.TRANSITION_CONFIGURE), f"{fqn} failed to configure"
    assert change_state(node, fqn, Transition.TRANSITION_ACTIVATE), f"{fqn} failed to activate"


def set_parameter(node, fqn: str, name: str, value) -> bool:
    """Set one parameter of a running node through its set_parameters service."""
    if isinstance(value, bool):
        parameter_value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, int):
        parameter_value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    elif isinstance(value, float):
        parameter_value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        parameter_value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
    client = node.create_client(SetParameters, f"{fqn}/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=30)
        request = SetParameters.Request(parameters=[Parameter(name=name, value=parameter_value)])
        return result_of(client.call_async(request), 30).results[0].successful
    finally:
        node.destroy_client(client)
