"""The shipped default model (ONNX + safetensors) and its JSON card, found as package data."""
