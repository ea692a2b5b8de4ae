"""Built-in Matryoshka dimension schedules: halving down to a floor, or an explicit list."""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator, model_validator

from ..components import DimSchedule, Params, ValidationContext
from ..hookspecs import hookimpl


class HalvingParams(Params):
    floor: int = Field(32, ge=1, description="Smallest dimension to train; halving stops above it.")
    weights: list[float] | None = Field(None, description="Loss weight per dimension, largest first.")


class Halving(DimSchedule[HalvingParams]):
    """Full dimension, then half, quarter, … while at least `floor` (384→192→96→48 for floor 48)."""

    name = "halving"
    Params = HalvingParams

    def dims(self, full_dim: int) -> list[int]:
        dims = [full_dim]
        while dims[-1] % 2 == 0 and dims[-1] // 2 >= self.params.floor:
            dims.append(dims[-1] // 2)
        return dims

    def weights(self, dims: list[int]) -> list[float] | None:
        return self.params.weights

    def check(self, ctx: ValidationContext) -> list[str]:
        problems = []
        if ctx.full_dim is not None:
            if self.params.floor > ctx.full_dim:
                problems.append(f"floor: {self.params.floor} is larger than the model's dimension {ctx.full_dim}")
            elif self.params.weights is not None and len(self.params.weights) != len(self.dims(ctx.full_dim)):
                problems.append(
                    f"weights: {len(self.params.weights)} given for {len(self.dims(ctx.full_dim))} "
                    f"dimensions {self.dims(ctx.full_dim)}"
                )
        return problems


class ExplicitParams(Params):
    values: list[int] = Field(description="Dimensions to train, descending, starting at the model's dimension.")
    weights: list[float] | None = Field(None, description="Loss weight per dimension, same length as values.")

    @field_validator("values")
    @classmethod
    def _descending(cls, values: list[int]) -> list[int]:
        if not values:
            raise ValueError("must list at least one dimension")
        if any(v < 1 for v in values):
            raise ValueError("dimensions must be positive")
        if any(a <= b for a, b in itertools.pairwise(values)):
            raise ValueError(f"must be strictly descending, got {values}")
        return values

    @model_validator(mode="after")
    def _same_length(self):
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(f"weights has {len(self.weights)} entries but values has {len(self.values)}")
        return self


class Explicit(DimSchedule[ExplicitParams]):
    """An explicit descending list of dimensions, e.g. [384, 192, 96, 48]."""

    name = "explicit"
    Params = ExplicitParams

    def dims(self, full_dim: int) -> list[int]:
        return list(self.params.values)

    def weights(self, dims: list[int]) -> list[float] | None:
        return self.params.weights

    def check(self, ctx: ValidationContext) -> list[str]:
        values = self.params.values
        if ctx.full_dim is None:
            return []
        if values[0] > ctx.full_dim:
            return [f"values: {values[0]} is larger than the model's dimension {ctx.full_dim}"]
        if values[0] != ctx.full_dim:
            return [f"values: must start with the model's full dimension {ctx.full_dim} (got {values[0]})"]
        return []


@hookimpl
def register_dim_schedules(register):
    register(Halving)
    register(Explicit)
