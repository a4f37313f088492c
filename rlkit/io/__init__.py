"""Files and logs: safetensors without pickle, training checkpoints, the TensorBoard
recorder and the progress display."""
