"""``platform up``: the validator's services composed in one process, supervised."""
