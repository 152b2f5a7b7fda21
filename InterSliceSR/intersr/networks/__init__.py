"""Networks and backends: the network, its weights and checks, ONNX export, torch and ONNX Runtime inference."""
