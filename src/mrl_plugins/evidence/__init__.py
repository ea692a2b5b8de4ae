"""A finished run's evidence: its folder (:mod:`.rundir`, the one owner of its layout), what it
measured (:mod:`.results`: evaluation and validation columns in separate fields), what it saved
to be read again (:mod:`.saved`: the evaluation set, embeddings, per-query scores), which
differences are real (:mod:`.stats`) and what that recommends (:mod:`.decisions`, pure
functions choosing on validation).

Nothing here imports the run, recipe validation, the search side or the presenters; the run
writes evidence through these modules and every reader reads it through them
(``tests/test_layers.py`` holds the rule).
"""
