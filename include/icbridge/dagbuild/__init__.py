"""DAG builders, one module per flow; dags/billers.py calls each for every biller.

Each flow module exposes ``build(biller, billers_dir) -> DAG | None`` (None: the biller's
CIS or configuration does not have that flow). Parse-time only: no network, no DB.
"""
