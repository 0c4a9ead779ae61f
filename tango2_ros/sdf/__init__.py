"""SDF, the software-defined farm: greenhouse plant, actuators, controllers and the safety supervisor (ROS-free)."""
