"""Server fixtures (FTPS, SFTP): owned by the transfer work."""
