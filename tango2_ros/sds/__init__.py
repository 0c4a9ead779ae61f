"""SDS, the software-defined ship: COLREG geometry and decisions (ROS-free), scenarios and the simulator."""
