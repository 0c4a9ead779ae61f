"""Model runtimes shared by every AI node: load, warm up, health-check, infer, report, and swap atomically."""
