"""The mechanism registry (`registry.REGISTRY`), decoded parameters (`params`), operation objects
(`ops`) and one module per mechanism family, each with a `register()`."""
