"""Vision models: the Darknet-to-ONNX converter and YOLO output decoding."""
