"""Turn a launch profile into a `launch` description, for `ros2 launch tango2_ros <profile>.launch.py`.

Only machines with ROS 2 installed have `launch` and `launch_ros` (they are not on PyPI), so they are imported
when a launch file asks for a description, never at package import. The profile is the same one that
`tango2 launch` reads; lifecycle nodes are configured when their process starts and activated once inactive.
"""
from __future__ import annotations

from tango2_ros.bringup.profiles import load_profile


def generate_profile_launch_description(profile_name: str):
    import lifecycle_msgs.msg
    from launch import LaunchDescription
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState

    profile = load_profile(profile_name)
    actions = []
    for spec in profile.nodes:
        common = dict(
            package="tango2_ros",
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            parameters=[dict(spec.parameters)],
            remappings=list(spec.remappings.items()),
            additional_env=dict(spec.env),
            output="screen",
            respawn=spec.restart.max_restarts > 0,
            respawn_delay=spec.restart.backoff_s,
        )
        if not spec.lifecycle:
            actions.append(Node(**common))
            continue
        node = LifecycleNode(**common)
        configure = EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE,
        ))
        activate_when_inactive = RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(
                lifecycle_node_matcher=matches_action(node),
                transition_id=lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE,
            ))],
        ))
        actions += [activate_when_inactive, node, configure]
    return LaunchDescription(actions)
