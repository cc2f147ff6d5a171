"""polldrop generator: YAML future specs to C (load, validate, model, render)."""

__version__ = "0.2.0"
