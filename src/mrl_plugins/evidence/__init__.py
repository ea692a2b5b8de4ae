"""A finished run's evidence: its folder (:mod:`.rundir`), what it measured (:mod:`.results`)
and what that recommends (:mod:`.decisions`).

Nothing here imports the run (``mrl_plugins.run``), recipe validation or the presenters; the
run writes evidence through these modules and every reader reads it through them
(``tests/test_layers.py`` holds the rule).
"""
