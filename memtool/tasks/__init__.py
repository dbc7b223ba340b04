"""Tasks, one module or package each. ``memtool.registry.load_all`` imports every one of them, which
registers each task under its name; nothing else needs to list them."""
