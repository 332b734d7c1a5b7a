"""How to train: the engine (Lightning) and the strategies, which agree only on `protocol`."""
