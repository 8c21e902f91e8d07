"""Node parameters: declared with descriptions and ranges, coerced the way ROS users type them, and
either read-only or applied live.

Each parameter is one of
- ``startup`` (read-only descriptor): read once when the node starts; ``ros2 param set`` is refused
  with the reason;
- ``live``: a set callback checks the new value and the node applies it at once;
- ``configure`` (lifecycle nodes): read by the configure transition; settable while the node is
  unconfigured, refused otherwise with the reason (``ros2 lifecycle set <node> cleanup`` first).

An integer given for a float parameter (``-p rate_hz:=30``, ``ros2 param set ... rate_hz 30``) is
taken as that float, as rclcpp users expect.
"""

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter

APPLIES = ("startup", "live", "configure")
APPLIES_TEXT = {
    "startup": "Read-only: read when the node starts.",
    "live": "Live: `ros2 param set` applies it at once.",
    "configure": "Read at configure: set it while the node is unconfigured.",
}


class ParameterError(ValueError):
    """A parameter value outside its documented range or set of choices."""


@dataclass(frozen=True)
class Param:
    """One node parameter: default, description, when a new value applies and (optionally) a numeric
    range or a set of choices."""

    name: str
    default: object
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    applies: str = "startup"

    def __post_init__(self):
        if self.applies not in APPLIES:
            raise ValueError(f"parameter '{self.name}': applies must be one of {APPLIES}")

    @property
    def is_float(self) -> bool:
        return isinstance(self.default, float)

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(map(str, self.choices))}."
        descriptor = ParameterDescriptor(
            name=self.name,
            description=f"{text} {APPLIES_TEXT[self.applies]}",
            read_only=self.applies == "startup",
        )
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max))]
            elif self.is_float:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(self.min), to_value=float(self.max))
                ]
        return descriptor

    def coerce(self, parameter: Parameter) -> Parameter:
        """An integer for a float parameter as that float; anything else unchanged."""
        if self.is_float and parameter.type_ == Parameter.Type.INTEGER:
            return Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
        return parameter

    def check(self, value):
        """Return the value if valid, else raise ParameterError naming the parameter and the rule."""
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is not one of {list(self.choices)}")
        if self.min is not None and value < self.min:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is below its minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is above its maximum {self.max}")
        return value


def declare(node, params, apply=None, configurable=None) -> dict:
    """Declare all params on the node and return their validated values by name.

    The returned dict stays current: a successful ``ros2 param set`` of a live parameter updates it.
    ``apply(changes)`` (name -> new value) is called before a live change is accepted, so the node
    can put it into effect; raising ParameterError refuses the change with that reason.
    ``configurable()`` says whether ``configure`` parameters may change now (lifecycle nodes: while
    unconfigured).

    rclpy itself rejects out-of-range overrides at declaration (InvalidParameterValueException);
    ``check`` covers choices and keeps the message uniform. Either way the node refuses to start
    with a message that names the parameter.
    """
    by_name = {param.name: param for param in params}
    # rclpy types a parameter by its default and refuses an override of another type; the overrides
    # (command line, parameter files, launch) are only reachable in this dict before declaration.
    overrides = node._parameter_overrides
    for name, override in list(overrides.items()):
        if name in by_name:
            overrides[name] = by_name[name].coerce(override)
    values = {}
    for param in params:
        value = node.declare_parameter(param.name, param.default, param.descriptor()).value
        values[param.name] = param.check(value)

    def coerce(parameters):
        return [by_name[p.name].coerce(p) if p.name in by_name else p for p in parameters]

    def on_set(parameters):
        changes = {}
        for parameter in parameters:
            param = by_name.get(parameter.name)
            if param is None:
                continue
            if param.applies == "configure" and configurable is not None and not configurable():
                return SetParametersResult(
                    successful=False,
                    reason=f"'{param.name}' is read at configure: deactivate and clean up the node first",
                )
            try:
                changes[param.name] = param.check(parameter.value)
            except ParameterError as error:
                return SetParametersResult(successful=False, reason=str(error))
        live = {name: value for name, value in changes.items() if by_name[name].applies == "live"}
        if live and apply is not None:
            try:
                apply(live)
            except ParameterError as error:
                return SetParametersResult(successful=False, reason=str(error))
        values.update(changes)
        return SetParametersResult(successful=True)

    node.add_pre_set_parameters_callback(coerce)
    node.add_on_set_parameters_callback(on_set)
    return values
