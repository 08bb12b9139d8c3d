"""One sync, start to end: the run, its state, where its events go, and the plugin manager."""
