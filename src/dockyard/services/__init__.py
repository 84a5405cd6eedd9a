"""Services built on the registry core, shared by the API, the UI and the CLI."""
