"""What every registered architecture does to its model's config."""


def set_arch_defaults(cfg, **defaults):
    """Gives the fields of ``cfg`` the arch's values, except those the user set.

    fairseq's command-line path leaves unset model options out of ``cfg`` (and old checkpoints
    may hold them as None); the config's own defaults fill whatever the arch does not set.
    """
    for name, value in defaults.items():
        if getattr(cfg, name, None) is None:
            setattr(cfg, name, value)
