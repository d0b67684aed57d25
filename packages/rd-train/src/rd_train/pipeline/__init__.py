"""Orchestration of many runs: the sweeps of params.yaml (`sweep`), their worker processes and stop
handling (`workers`), progress lines with an ETA (`progress`), the cost plan (`plan`) and the DVC data pin
(`dvc_pin`). Every DVC stage's command enters through `rd_train.cli`."""
