"""memtool: train, evaluate and open up neural networks with an external memory."""

__version__ = "0.1.0"
