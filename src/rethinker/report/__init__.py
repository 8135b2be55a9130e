"""See what the policy does: the sample log of a training run, its curves, and
self-contained HTML pages of a run (``rethinker report RUN_DIR``) and of an evaluation.

One job per module:

- ``images``: small PNG thumbnails of record images, stored once under a folder.
- ``samples``: the rows of ``samples.jsonl`` (pure) and the resumable ``SampleLog`` writer.
- ``curves``: smoothing, which panels can move in a run's configuration, the figure.
- ``html``: escaping and the page's building blocks (CSS, filters).
- ``run_report``: ``RUN_DIR/report.html`` from config, metrics and samples.
- ``eval_report``: ``OUTPUT_DIR/report.html`` from an evaluation's predictions.
- ``cli``: the ``rethinker report`` command.
"""
