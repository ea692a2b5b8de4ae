"""``mrl-run sweep``: many runs of one recipe as trials of an Optuna study, chosen on the validation
split (``study``), and what the sweep writes beside them (``outputs``)."""
