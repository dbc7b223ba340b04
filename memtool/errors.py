"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """A mistake in the user's input: config, data, checkpoint or arguments.

    The CLI prints the message as a single line and exits with code 2; the message must name the file,
    field or value at fault.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stops without writing the bad state."""
