"""``mikey eval``: prompt and model evaluations for researchers, built on pydantic-evals.

- ``suite``: suites as YAML in ``evals/`` (cases inline or from CSV/JSONL, scorers, thresholds);
- ``records``: what a run writes (one ``SampleRecord`` per case, cell and epoch; the run's manifest);
- ``targets``: what a case runs against (one prompt call through the router, the understand node, a whole chat turn,
  a code engine);
- ``scorers``: exact, contains, regex, JSON schema, numeric, intent, grounding, stance, safety, LLM judge;
- ``runner``: the models x prompts matrix, epochs, per-group concurrency, the response cache and resumption;
- ``stats``: confidence intervals and paired tests (McNemar, paired bootstrap);
- ``report``: the terminal summary and the static HTML report.
"""
