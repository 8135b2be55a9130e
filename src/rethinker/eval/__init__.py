"""rethinker.eval: a model over benchmarks.

- ``suite``: load each benchmark, judge every item, resumable predictions, summaries.
- ``report``: summaries (accuracy with Wilson intervals, pass@k, per category) as JSON,
  Markdown and CSV, with the published figures beside ours.
- ``annotate``: each training query's pass rate for the user's model.
- ``infer``: one question about one or more images.
The batched, judged generation they share with the trainer is ``rollout.evaluate``.
"""
