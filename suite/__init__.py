"""Loss-stability suite: how wrong can PyTorch's BCE, BCEWithLogits and kl_div be, where, and why."""

__version__ = "0.1.0"
