"""icbridge: Invoice Cloud integration hub for the Harris CIS on Apache Airflow.

The core (layouts, mapping, state, soap, config, transfer) imports no Airflow; hooks,
operators and dags are thin Airflow shells over it.
"""

__version__ = "0.1.0"
