"""Model training, losses, metrics and ONNX export (needs torch; never imported by the runtime)."""
