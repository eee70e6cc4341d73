"""Airflow DAG file: shard 14 of 16 of the biller fleet (icbridge.dagbuild.fleet explains the split).

Builds the DAGs of the billers whose ``include/billers/<id>.yaml`` hashes to this shard; while a
task runs, only that task's DAG. Parse-time work is reading and validating YAML only.
"""

from icbridge.dagbuild.fleet import dags_for_file

globals().update(dags_for_file(__file__))
