"""The other process of the interface round-trip test: echoes every tango2_msgs message, serves every service
and action. Requests and goals are compared with the expected samples; a mismatch gives a default response."""
from __future__ import annotations

import rclpy
from rclpy.action import ActionServer
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from helpers.samples import interface_classes, sample
from tango2_ros.ros.interfaces import to_data


def main() -> None:
    rclpy.init()
    node = Node("interface_peer")
    group = ReentrantCallbackGroup()
    keep = []
    for name, cls in interface_classes("tango2_msgs", "msg").items():
        publisher = node.create_publisher(cls, f"/t2test/msg/{name}/echo", 10)
        keep.append(node.create_subscription(cls, f"/t2test/msg/{name}", publisher.publish, 10))
    for name, cls in interface_classes("tango2_msgs", "srv").items():
        def handle(request, response, cls=cls):
            return sample(cls.Response) if to_data(request) == to_data(sample(cls.Request)) else response
        keep.append(node.create_service(cls, f"/t2test/srv/{name}", handle, callback_group=group))
    for name, cls in interface_classes("tango2_msgs", "action").items():
        def execute(goal_handle, cls=cls):
            if to_data(goal_handle.request) != to_data(sample(cls.Goal)):
                goal_handle.abort()
                return cls.Result()
            goal_handle.publish_feedback(sample(cls.Feedback))
            goal_handle.succeed()
            return sample(cls.Result)
        keep.append(ActionServer(node, cls, f"/t2test/action/{name}", execute, callback_group=group))
    print("peer ready", flush=True)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
