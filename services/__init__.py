"""Services the flows and the console share: reads of the store composed with the pure logic of ``routing`` and
``calibration`` into the figures both act on or show.

Where the console needs something a flow computes, it lives here, once, and both import it (never a copy):
``services.audit`` (the live audit estimate and the annotators' gold error), ``services.certify`` (the certified
threshold of a target), ``services.guard`` (the live guard of each target segment and its halts) and
``services.preview`` (what a policy would do, from the held-out labels and the arrival
rate). Layering: ``ui`` and ``flows`` import this package; it imports ``scoring``, ``store``, ``routing`` and
``calibration`` only, and nothing below imports it.
"""
