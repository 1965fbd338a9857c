"""The Open Inference Protocol (KServe V2) routes: inference and the model repository."""
