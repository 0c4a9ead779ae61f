"""Rolling a model release out to a fleet of device stacks: a canary first, telemetry back over MQTT, wider or back."""
