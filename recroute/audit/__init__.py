"""Why this LLM, and is the router still sound: per-decision explanations and router audits.

- :mod:`recroute.audit.explain`: one explanation per prompt (every candidate's predicted P(correct) with
  the uncertainty the router family can give, the cost term and utility, the margin to the runner-up,
  the family's evidence, and the counterfactuals: the cost weight at which the choice flips, the
  excluded candidate that would have been chosen);
- :mod:`recroute.audit.drift`: live prompts against the training prompts (nearest-neighbour distance
  test per window, domain-classifier AUC);
- :mod:`recroute.audit.audit`: selection shares beside the oracle's, regret per task, calibration,
  decision-log health over time, drift, and a ranked list of findings in plain words;
- :mod:`recroute.audit.report`: the findings as one self-contained HTML page with inlined PNG plots.

Layer: above cost, feedback, coldstart and debias; below serve.
"""
