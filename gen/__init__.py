"""polldrop generator: YAML future specs to C (load, validate, model, render)."""
