"""Learning and evaluating routers from production logs: decision logs, stochastic policies, log
simulation from full-information data, off-policy evaluation and counterfactual training."""
