"""Model families, one module each. ``memtool.registry.load_all`` imports every module here, which
registers each family under its name; nothing else needs to list them."""
