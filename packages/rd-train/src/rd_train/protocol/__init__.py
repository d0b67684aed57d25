"""Protocol v3 (issue 30): every run counts, tested as each claim is stated, rebuilt from committed records.

* `rd_train.protocol.records`: a finished run's record (identity, metrics, validation history, training
  curves) as git-tracked JSON lines, written from the runs and read back by the reports;
* `rd_train.protocol.paired`: the tests with seeds as blocks (Page per cell, the stratified Page
  headline, the paired log-ratio effect, the adjacent steps that fall);
* `rd_train.protocol.summary`: the one-screen table that opens claims.md, and its verdict rule;
* `rd_train.protocol.claims`: the cells, tests and claims.md from the records;
* `rd_train.protocol.diagnostics`: convergence.md, each run's drift and GECO tracking error, reported
  beside the verdicts and never a filter;
* `rd_train.protocol.length`: claims.md's section on the effect at every measured training length;
* `rd_train.protocol.control`: the balancer control's section of claims.md;
* `rd_train.protocol.figures`: the claims' figures;
* `rd_train.protocol.report`: `rd-train report --records`, every table and figure above from the records
  (the DVC stage ``aggregate``).

The DVC stage ``records`` writes the records from the runs; ``aggregate`` reads nothing else but the
length pilot's committed results and the committed records of runs trained outside ``dvc repro`` (the
AutoencoderKL at twice the steps), which enter only under the params they were trained with
(docs/protocol.md).
"""
