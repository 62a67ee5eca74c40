"""One module per strategy; importing this package registers them all."""

from lifelong.continual.plugins import baselines  # noqa: F401
from lifelong.continual.plugins import ewc, lwf, mas, si  # noqa: F401
from lifelong.continual.plugins import agem, der, gem, generative, icarl, replay  # noqa: F401
