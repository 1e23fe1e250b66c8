"""Configuration: the config files and their overrides (`files`), the checks that run before
JAX starts (`checks`), the fields' documentation (`--list`, `docs`) and the training
command's command line (`command_line`)."""
