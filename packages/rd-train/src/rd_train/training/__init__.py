"""One training run: the model (`models`), its data (`data`), the losses (`losses`: pixel SSE, the neural
families and the EnCodec balancer), the objective and its step (`module`, `step_graph`), the rate control
(`rate`: fixed β or GECO; `rate_tracking`: whose KL GECO reads), the EMA of the weights (`ema`,
`averages`), evaluation and posterior metrics (`evaluation`, `metrics`), the mean over DDP workers
(`distributed`), checkpoints (`checkpoints`), precision (`precision`), the target-feature table
(`feature_table`), and `run`: ``fit(config)`` and ``load_trained(checkpoint)``, the one way to train a run
and to load a finished one."""
