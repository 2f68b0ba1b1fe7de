"""The online loop around a live gateway: scheduled refits from its decision log, promotion only when
off-policy evaluation proves the candidate better, exploration within a budget, new LLMs onboarded live.

- :mod:`.journal`: the loop journal (JSONL) and the state a restart resumes from.
- :mod:`.schedule`: when a refit is due (every N new outcomes or T seconds).
- :mod:`.exploration`: the live policy that explores within an off-greedy traffic budget.
- :mod:`.refit`: a decision log as training data (prompt texts encoded), a candidate fitted by
  doubly-robust completion (``recroute.feedback.learn``), the recent slice it never saw.
- :mod:`.gate`: candidate minus live by DR on that slice, an interval honest when support is thin (the
  logging design's standard error, worst-case bounds where a choice was never explorable), the promotion rule.
- :mod:`.shadow`: exploration spent where the last (conservative) refit differs from live, and its gate.
- :mod:`.promote`: promoting a bundle (the gateway's ``POST /admin/reload``, or in process).
- :mod:`.onboard`: a new LLM probed adaptively (``coldstart.adaptive``) and placed with ``partial_fit_llms``.
- :mod:`.runner`: one loop step and the ``recroute loop run`` driver.
- :mod:`.replay`: the stream simulator's loopback upstreams (answers from stored results).
"""
