"""One module per strategy; importing this package registers them all."""

from lifelong.continual.plugins import (  # noqa: F401  # noqa: F401  # noqa: F401
    adapters,
    agem,
    baselines,  # noqa: F401
    den,
    der,
    ewc,
    gem,
    generative,
    hat,
    icarl,
    lwf,
    mas,
    packnet,
    progressive,
    replay,
    si,
)
