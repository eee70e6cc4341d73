"""Web pages icbridge adds to the Airflow api-server (through the plugin in plugins/)."""
