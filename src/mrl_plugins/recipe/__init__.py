"""A recipe: TOML in, a validated :class:`Recipe` out, every problem at once.

``schema``      the recipe's own tables (pydantic, unknown keys refused), ``--set`` overrides
``load``        components looked up and validated, cross-checks, the run's models planned
``run_models``  the run's own models: one key and one label each, known before any model loads
``checks``      what depends on the machine: room on the disk, memory, the output folder, publishing
``data``        the recipe's data loaded through its source, checked, with its validation split

Nothing here imports torch or loads a model.
"""

from .load import ComparisonSpec, ComponentSpec, Recipe, load_recipe, output_path, variant_specs
from .schema import RecipeModel, apply_override, read_toml

__all__ = ["ComparisonSpec", "ComponentSpec", "Recipe", "RecipeModel", "apply_override", "load_recipe",
           "output_path", "read_toml", "variant_specs"]
