"""The `jaxnets` command line. Heavy libraries are imported inside commands only."""
