"""The CLI verbs that are not the service itself: ``check``, ``lint``, ``map``/``mappings`` and ``demo``.

Each module holds one verb's ``cli_*`` function (called by ``promotel.cli``) and the plain function it wraps.
``promotel run`` lives in ``promotel.service``.
"""
