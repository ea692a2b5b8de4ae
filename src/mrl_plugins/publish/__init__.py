"""Publishing a run's model: what the saved model carries (``model``: its default width, mrl.json,
the serving metadata, the card), the push to the Hub (``push``, ``hub``), and the documents a
finished run writes for people (``documents``: the card and the report)."""
