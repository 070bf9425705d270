"""Alerts on abnormal calls: the rules (`rules`), the engine that runs them on the hot path (`engine`), their
configuration (`config`) and the daemon's alerts feature (`feature`).

Kept empty on purpose: ``smdrd.config`` imports ``smdrd.alerts.config``, which imports this package first, and
the command line must start without loading the rules, the rater and phonenumbers.
"""
