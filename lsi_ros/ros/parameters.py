"""Declaring node parameters with descriptions and ranges, and failing clearly on bad values."""

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


class ParameterError(ValueError):
    """A parameter value outside its documented range or set of choices."""


@dataclass(frozen=True)
class Param:
    """One node parameter: default, description and (optionally) a numeric range or a set of choices."""

    name: str
    default: object
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(map(str, self.choices))}."
        descriptor = ParameterDescriptor(name=self.name, description=text)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max))]
            elif isinstance(self.default, float):
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(self.min), to_value=float(self.max))
                ]
        return descriptor

    def check(self, value):
        """Return the value if valid, else raise ParameterError naming the parameter and the rule."""
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is not one of {list(self.choices)}")
        if self.min is not None and value < self.min:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is below its minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is above its maximum {self.max}")
        return value


def declare(node, params) -> dict:
    """Declare all params on the node and return their validated values by name.

    rclpy itself rejects out-of-range overrides at declaration (InvalidParameterValueException);
    ``check`` covers choices and keeps the message uniform. Either way the node refuses to start
    with a message that names the parameter.
    """
    values = {}
    for param in params:
        value = node.declare_parameter(param.name, param.default, param.descriptor()).value
        values[param.name] = param.check(value)
    return values
