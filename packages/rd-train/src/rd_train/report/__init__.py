"""What every figure shares: matplotlib set up for files (`plotting.pyplot`), panels and atomic saves.
The tables and figures themselves live with what they report (`rd_train.protocol`, `rd_train.mechanism`,
`rd_train.diffusability`)."""
