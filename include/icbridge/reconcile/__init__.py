"""Balance All: the weekly IC-vs-CIS reconciliation (spec: shared/specs/balance-all.md).

Airflow-free: :mod:`.compare` decides one account's outcome to the cent, :mod:`.engine`
streams IC's open invoices, asks the CIS concurrently (bounded, rate-limited, retried) and
corrects IC where allowed; :mod:`.export` and :mod:`.charts` render a stored run
(:mod:`icbridge.state.reconcile`) for analysts.
"""
