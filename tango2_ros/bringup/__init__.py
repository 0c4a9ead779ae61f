"""Bring-up: launch profiles (the single source of truth for both `ros2 launch` and `tango2 launch`) and the
process supervisor behind `tango2 launch`."""
