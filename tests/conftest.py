"""The fixtures (``tiny_model_dir``, ``tiny_recipe``, ``finished_tiny_run`` …) and the ``slow``
marker come from the test kit's pytest plugin, :mod:`mrl_plugins.testkit.pytest_plugin`, installed with
the package, which third-party plugins' tests use too."""
