"""Training SCONE and baseline OLMo models (work in progress: data and DeepSpeed config so far)."""
