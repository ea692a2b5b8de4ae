"""Presenting a run's evidence for people: sections defined once (:mod:`.sections`, the serving
costs in :mod:`.costs`, their blocks in :mod:`.blocks`), rendered for the console and Markdown
(:mod:`.render`), the report and its plots (:mod:`.report`), the model card's section from a
template (:mod:`.card`) and the demo page (:mod:`.demo`). The report, the card and the demo all
render the same section objects, and only read evidence.

Nothing here imports the run, a command or a publisher; commands and publishers import these
(``tests/test_layers.py`` holds both rules).
"""
