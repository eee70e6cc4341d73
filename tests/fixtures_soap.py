"""SOAP fixtures (IC simulator): owned by the SOAP work."""
