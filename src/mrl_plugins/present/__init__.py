"""Presenting a run's evidence: sections defined once (:mod:`.sections`), rendered for the
console and Markdown (:mod:`.render`), and the model card's section from a template
(:mod:`.card`). The report, the card and the demo all render the same section objects.

Nothing here imports the run (``mrl_plugins.run``); ``tests/test_layers.py`` holds the rule.
"""
