"""The operator console: a web page served from the machine itself, fed live by the ROS topics (ROS-free here;
the `console` node is the adapter). Accounts, roles, sessions and the audit log live in `TANGO2_CONSOLE_HOME`."""
