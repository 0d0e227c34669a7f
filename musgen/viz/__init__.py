"""Pictures and pages: piano-roll plots (``pianoroll_plot``), a sample's WAV and PNG (``media``) and
the static HTML report of a run (``report``). matplotlib draws on its Agg canvas (no display)."""
