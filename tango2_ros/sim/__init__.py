"""The simulators' ROS harness: the plant's or the sea's side of a closed loop through the real nodes over DDS
(`farm_loop`, `ship_loop`), and the rigs that start those nodes for the CLI and the tests."""

SIM_NAMESPACE = "/tango2_sim"  # the simulated rig's nodes, apart from a profile's /tango2
