"""Training SCONE and baseline OLMo models under torchrun with DeepSpeed ZeRO: batches and sidecar
(data.py), the OLMo -> DeepSpeed config (ds_config.py), which OLMo keys are honoured (olmo_keys.py),
what a launch does with its save_folder (run_state.py), safe checkpoint reads (checkpoint.py), the
loop (trainer.py), in-loop evaluation (evaluation.py) and the command line (cli.py)."""
