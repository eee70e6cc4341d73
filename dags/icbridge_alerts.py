"""Airflow DAG file: `icbridge__alerts`, the fleet's health as alerts (icbridge.dagbuild.alerts)."""

from icbridge.dagbuild.alerts import build

dag = build()
