"""One eval per module; each opens with a docstring naming its dataset, metric, direction and assumptions."""
