"""MCAP recording: the ros2msg schema text of a topic's type (its definition with every nested type once) and the
refusal of unknown types. A recording of a real run is checked in test_sds."""
import pytest

from tango2_ros.ros.recording import SEPARATOR, RecordingError, message_class, message_definition


def test_a_definition_lists_each_nested_type_once_after_the_root():
    text = message_definition("visualization_msgs/msg/MarkerArray")
    assert "Marker[] markers" in text.split(SEPARATOR)[0]  # the root definition comes first
    nested = [line for line in text.splitlines() if line.startswith("MSG: ")]
    assert len(nested) == len(set(nested))
    assert {"MSG: visualization_msgs/Marker", "MSG: std_msgs/Header", "MSG: builtin_interfaces/Time",
            "MSG: geometry_msgs/Point"} <= set(nested)
    assert "MSG: tango2_msgs/TargetAssessment" in message_definition("tango2_msgs/NavigationDecision")


@pytest.mark.parametrize("name, words", [
    ("no_such_msgs/msg/Thing", "no definition"), ("std_msgs/msg/NoSuchType", "no definition"),
    ("not a type", "is not a message type"), ("a/b/c/d", "is not a message type"),
])
def test_unknown_or_malformed_types_are_refused(name, words):
    with pytest.raises(RecordingError, match=words):
        message_definition(name)


def test_message_class():
    assert message_class("tango2_msgs/msg/NavigationDecision").__name__ == "NavigationDecision"
    with pytest.raises(RecordingError, match="cannot be imported"):
        message_class("tango2_msgs/msg/Nothing")
