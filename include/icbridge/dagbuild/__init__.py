"""DAG builders, one module per flow; dags/billers_NN.py (icbridge.dagbuild.fleet) call each for their billers.

Each flow module exposes ``build(biller, billers_dir) -> DAG | None`` (None: the biller's
CIS or configuration does not have that flow). Parse-time only: no network, no DB.
"""
