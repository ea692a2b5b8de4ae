"""Where commands write, shared by every command that writes: one writer per folder (``locks``), a
folder that can be created and a build that replaces it only when finished (``destination``)."""
