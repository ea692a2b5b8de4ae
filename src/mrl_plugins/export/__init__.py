"""Carrying a model to the engines people serve with.

``onnx``            one ONNX graph from token ids to the truncated, re-normalised embedding (and the
                    OpenVINO conversion of it), checked against sentence-transformers
``runtimes``        running those graphs (onnxruntime, OpenVINO) and quantising them (int8)
``legacy``          a checked copy in the format sentence-transformers 3 / transformers 4 read
``folder``          the export folder's ``-o`` transaction, shared by every format
``serving_configs`` the metadata serving stacks read from a model folder (vLLM, TEI)
``published``       exports as ``mrl-run publish --export`` adds them to a model repository
``comparison``      the built-in ``export`` comparison: every width through each engine, in the run
"""
