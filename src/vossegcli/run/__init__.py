"""From files to files: what ``vosseg segment`` and ``vosseg benchmark`` do around the engine.

* :mod:`.segment` - :func:`~vossegcli.run.segment.segment`, the library API behind ``vosseg segment``
  (frames decoded and scaled in a background thread, PNGs written by another);
* :mod:`.inputs` - opening the frames and masks, the engine's working size and the scaling;
* :mod:`.outputs` - the output folder: checks, temporary files, the background PNG writer and its
  error messages;
* :mod:`.resume` - the run record ``<out>/.vosseg-run.json``, the saved engine state
  ``<out>/.vosseg-state.pt`` and where ``--resume`` continues;
* :mod:`.report` - the ``--report`` JSON: timings, memory, environment, weights;
* :mod:`.signals` - SIGINT/SIGTERM held back while the engine is in the middle of a frame;
* :mod:`.benchmark` - ``vosseg benchmark --fps``.

:mod:`vossegcli.pipeline` re-exports the public names.
"""
