"""Every command line of the project (the top-level scripts and the console scripts are thin shims over these)."""
