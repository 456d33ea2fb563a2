"""Reproduced experiments, one module each: configuration, training, evaluation, table and figure.

* ``ko2023``: Ko & Ko's comparison of their Lagrangian objective (eq. 7) with the ELBO (eq. 6):
  Table 1 and Figure 1. Command line: ``python -m vaelib reproduce``.
* ``multiplier_rules``: Part III's comparison of the rules that update the Lagrange multiplier.

Import the module you need (``from vaelib.experiments import ko2023``); none is loaded eagerly.
"""
